"""The wahook benchmark suites (run by bench/run.py)."""
