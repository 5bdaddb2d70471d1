"""`python -m bench.sweep RESULTS_DIR`: where every run under a results folder stands (bench/launch/sweep.py)."""
from bench.launch.sweep import main

if __name__ == "__main__":
    raise SystemExit(main())
