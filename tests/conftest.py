"""Shared fixtures: tiny timm models built with pretrained=False and generated data. No downloads."""
import os
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # never reach the hub from tests
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402

# The mini backbone's architecture (conf/backbone/vit_tiny_mini.yaml), random weights.
TINY_VIT = dict(img_size=32, patch_size=8, embed_dim=96, depth=4, num_heads=3, mlp_ratio=2.0)


@pytest.fixture
def tiny_vit():
    import timm
    import torch

    def make(num_classes: int = 10, seed: int = 0):
        torch.manual_seed(seed)
        return timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=num_classes, **TINY_VIT)

    return make


def run_cli(*args: str, timeout: int = 600):
    """Run `python <args>` from the project root; returns the CompletedProcess."""
    import subprocess

    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
