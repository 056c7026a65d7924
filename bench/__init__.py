"""flightdeck benchmarks: each stage against its reference, on the same data, at several sizes.

Run ``python -m bench --help`` (or ``make bench``). Not part of the test suite.
"""
