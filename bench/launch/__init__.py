"""Launching runs: the command line (cli), a run's identity and folder (identity), one Hydra job's
body (job) and where each run of a sweep stands (sweep).

Hydra-free and torch-free at import (tests/test_layout.py): launch.py and the sweeper plugin
(hydra_plugins/bench_sweeper) hold the Hydra side and pass plain values in.
"""
