"""Benchmark harness for wfe (and DBOS side by side): ``python -m bench``."""
