"""`python -m bench.export RUN_DIR [--out FILE]`: a run's deployable model in one file (bench/run/export.py)."""
from bench.run.export import main

if __name__ == "__main__":
    raise SystemExit(main())
