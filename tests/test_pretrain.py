"""The tiny backbone's pretraining script writes weights that timm loads offline into a new head."""
import json

import torch

from bench.config import backbone_config
from bench.models import build_backbone
from bench.pretrain import main as pretrain


def test_pretrain_writes_loadable_weights(tmp_path):
    out = tmp_path / "w.safetensors"
    summary = pretrain(["--out", str(out), "--images", "256", "--val-images", "64", "--epochs", "1", "--no-progress"])
    assert out.is_file() and json.loads(out.with_suffix(".json").read_text())["epochs"] == 1
    assert 0 <= summary["history"][0]["val_top1"] <= 100

    cfg = backbone_config("vit_tiny_mini")
    cfg.file = str(out)
    model = build_backbone(cfg, num_classes=7)  # a different head: dropped, backbone loaded exactly
    from safetensors.torch import load_file
    saved = load_file(out)
    assert model.get_classifier().out_features == 7
    for name, p in model.state_dict().items():
        if not name.startswith("head."):
            assert torch.equal(p, saved[name]), name


def test_shipped_backbone_matches_its_config():
    cfg = backbone_config("vit_tiny_mini")
    model = build_backbone(cfg, num_classes=10)
    assert sum(p.numel() for p in model.parameters()) == 320_554
