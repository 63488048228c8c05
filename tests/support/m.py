"""The callables that definition tests name as placeholders, `m:f` and `m:g`.

A workflow found wrong has its callables imported too, to report a missing module with the
rest; these exist, so that a test of one mistake sees that mistake alone. `pytest` finds this
folder through `pythonpath` in pyproject.toml.
"""


def f() -> None:
    return None


def g() -> None:
    return None
