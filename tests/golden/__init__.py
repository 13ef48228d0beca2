"""Golden files and the script that writes them (``make_golden.py``); imported by the tests."""
