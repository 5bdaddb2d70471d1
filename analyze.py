"""Aggregate run records into leaderboards, comparisons with published results, cost tables and figures.

    python analyze.py RESULTS_DIR [RESULTS_DIR ...] [--out OUT_DIR] [options]

Its options and outputs: `python analyze.py --help`, or bench/analysis/cli.py, which does the work.
"""
import sys

from bench.analysis.cli import main

if __name__ == "__main__":
    sys.exit(main())
