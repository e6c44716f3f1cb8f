"""Benchmarks: `make bench` runs every module listed in ``bench.__main__.SUITES`` and rewrites
``docs/benchmarks.md``. Speed and memory targets live here, never in timed unit tests."""
