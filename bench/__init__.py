"""Trellis benchmarks: each measurement run side by side with its baseline.

Run ``python -m bench [NAME ...] [--quick]`` from the repository root; see
``bench/README.md`` and ``docs/performance.md``. Not collected by pytest.
"""
