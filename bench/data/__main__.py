"""`python -m bench.data check|prepare ...`: validate datasets on disk (bench/data/check.py), or write them from
their sources (bench/data/prepare.py)."""
import sys

USAGE = ("usage: python -m bench.data check [DATASET ...] [--data-root DIR] [--report FILE] [--no-decode] [--workers N] [-v]\n"
         "       python -m bench.data prepare {tfds,hf,fgvc} [DATASET ...] [--data-root DIR] [--from DIR] ...\n")

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ("check", "prepare"):
        sys.stderr.write(USAGE)
        sys.exit(2)
    if sys.argv[1] == "check":
        from bench.data.check import main
    else:
        from bench.data.prepare import main
    sys.exit(main(sys.argv[2:]))
