"""`python -m bench.data check [DATASET ...]`: validate datasets on disk (bench/data/check.py)."""
import sys

from bench.data.check import main

USAGE = "usage: python -m bench.data check [DATASET ...] [--data-root DIR] [--no-decode] [--workers N] [-v]\n"

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] != "check":
        sys.stderr.write(USAGE)
        sys.exit(2)
    sys.exit(main(sys.argv[2:]))
