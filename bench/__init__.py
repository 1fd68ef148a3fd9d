"""Benchmarks: `python -m bench.NAME [--scale N] [--json PATH]`; ratios against a baseline run alongside."""
