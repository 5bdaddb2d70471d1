"""One run, start to end (runner), and what it leaves: the deployable model (deploy, export), the
environment and memory it ran in (env, memory).

`bench.run.runner.run(cfg)` is the whole library seen from outside. This package imports nothing
itself, so that `bench.run.env` or `bench.run.export` load without the runner's imports.
"""
