"""peft-vision-bench library: data, models, training, evaluation and run records.

Nothing in here imports Hydra: every entry point takes the plain dataclasses of
`bench.config`, so the library can be driven from Python and tested without Hydra.
"""
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONF = PROJECT_ROOT / "conf"  # the Hydra config tree: config groups, recipes, backbones, datasets
