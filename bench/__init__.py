"""Benchmarks of podium against the plain-asyncio floor; run with `make bench`."""
