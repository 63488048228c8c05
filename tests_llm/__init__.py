"""The end-to-end suite against a real small model, run by `make test-llm`, not `make test`.

It lives beside `tests/` rather than in it so that the default collection (`testpaths`)
never needs the `llm` extra (llama-cpp-python, built from source) or a few minutes of CPU.
"""
