"""The tiny backbone's pretraining: weights timm loads offline into a new head, a run reproduced bit for bit
by `--check`, and the shipped weights giving the upstream accuracy their sidecar records."""
import json

import pytest
import torch
from safetensors.torch import load_file

from bench.config import backbone_config
from bench.models import build_backbone
from bench.pretrain import SHIPPED, main as pretrain, mini_tensors, weights_sha256
from bench.train.evaluate import top1

TINY = ["--images", "256", "--val-images", "64", "--teacher-epochs", "1", "--epochs", "1", "--no-progress"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain") / "w.safetensors"
    return out, pretrain(["--out", str(out), *TINY])


def test_pretrain_writes_loadable_weights(tiny_run):
    out, summary = tiny_run
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["settings"]["epochs"] == 1 and sidecar["settings"]["teacher_epochs"] == 1
    assert 0 <= summary["history"][0]["val_top1"] <= 100 and len(summary["teacher_history"]) == 1

    cfg = backbone_config("vit_tiny_mini")
    cfg.file = str(out)
    model = build_backbone(cfg, num_classes=7)  # a different head: dropped, backbone loaded exactly
    saved = load_file(out)
    assert model.get_classifier().out_features == 7
    assert not any(k.startswith(("to_mid", "to_last", "vit.")) for k in saved)  # only the ViT, by its own names
    for name, p in model.state_dict().items():
        if not name.startswith("head."):
            assert torch.equal(p, saved[name]), name


def test_check_reproduces_every_epoch_and_names_the_first_that_differs(tiny_run, capsys):
    out, summary = tiny_run
    pretrain(["--out", str(out), "--check", "--no-progress"])
    assert capsys.readouterr().out.count("==") == 2  # the teacher's epoch and the ViT's, hash for hash
    sidecar = out.with_suffix(".json")
    changed = json.loads(sidecar.read_text())
    changed["history"][0]["sha256"] = "0" * 64
    sidecar.write_text(json.dumps(changed))
    with pytest.raises(SystemExit, match="the vit's epoch 1 differs"):
        pretrain(["--out", str(out), "--check", "--no-progress"])


def test_shipped_weights_are_those_of_their_sidecar_and_score_its_upstream_accuracy():
    """The committed weights' hash and final upstream val top-1 are those the pretraining run recorded."""
    sidecar = json.loads(SHIPPED.with_suffix(".json").read_text())
    model = build_backbone(backbone_config("vit_tiny_mini"), num_classes=sidecar["upstream_classes"])  # head kept
    assert weights_sha256(model) == sidecar["weights_sha256"] == sidecar["history"][-1]["sha256"]
    val = mini_tensors("upstream", "val", sidecar["settings"]["seed"], sidecar["settings"]["val_images"])
    threads = torch.get_num_threads()
    torch.set_num_threads(sidecar["settings"]["threads"])  # as the run evaluated it
    try:
        assert top1(model, val, 500, torch.device("cpu"), progress=False) == sidecar["history"][-1]["val_top1"]
    finally:
        torch.set_num_threads(threads)


@pytest.mark.realsize
def test_the_shipped_pretraining_run_reproduces_bit_for_bit(capsys):
    """`python -m bench.pretrain --check` on the shipped sidecar: the upstream data as drawn and the teacher's first
    epoch give the recorded hash (the whole run, about 8 minutes on one thread, is docs/speed.md's command)."""
    pretrain(["--check", "--check-epochs", "1", "--no-progress"])
    assert "teacher epoch 1: weights sha256" in capsys.readouterr().out


def test_shipped_backbone_matches_its_config():
    cfg = backbone_config("vit_tiny_mini")
    model = build_backbone(cfg, num_classes=10)
    assert sum(p.numel() for p in model.parameters()) == 320_554
