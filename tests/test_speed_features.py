"""Speed features change nothing beyond tolerance on CPU: channels-last, fused AdamW, the
linear-probe fast path; autocast settings resolve as documented."""
import dataclasses

import pytest
import torch
from torch.utils.data import TensorDataset

from bench.config import DatasetConfig, RunConfig, TrainConfig, backbone_config
from bench.run.runner import run
from bench.train.loop import autocast_dtype, train


def losses(model, **kw):
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(64, 3, 32, 32, generator=g), torch.randint(0, 5, (64,), generator=g))
    channels_last = kw.pop("channels_last", False)
    cfg = TrainConfig(epochs=3, batch_size=16, lr=1e-3, progress=False, **kw)
    out = train(model, data, cfg, num_classes=5, seed=0, device=torch.device("cpu"), channels_last=channels_last)
    return torch.tensor([h["train_loss"] for h in out["history"]])


@pytest.mark.parametrize("feature", [{"channels_last": True}, {"fused_adamw": True}])
def test_feature_keeps_the_loss_curve(feature):
    import timm

    def convnext():
        torch.manual_seed(0)
        return timm.create_model("convnext_atto", pretrained=False, num_classes=5, depths=(1, 1, 1, 1),
                                 dims=(16, 24, 32, 48), conv_mlp=False)

    ref = losses(convnext(), fused_adamw=False)
    got = losses(convnext(), **({"fused_adamw": False} | feature))
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=0)


def test_autocast_resolution():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert autocast_dtype(TrainConfig(), cpu) is None
    assert autocast_dtype(TrainConfig(), cuda) is torch.bfloat16
    assert autocast_dtype(TrainConfig(amp="off"), cuda) is None
    with pytest.raises(ValueError, match="valid: auto, bf16, off"):
        autocast_dtype(TrainConfig(amp="fp8"), cpu)


def test_linear_fast_path_matches_epoch_loop(tmp_path):
    backbone = backbone_config("vit_tiny_mini")
    cfg = RunConfig(method="linear", dataset=DatasetConfig("mini/dspr_ori", "mini", "dspr_ori", "structured", 8, 32),
                    backbone=backbone, train=TrainConfig(epochs=5, lr=1e-2, progress=False),
                    results_dir=str(tmp_path), deploy_iters=0, save_weights=False)
    fast = run(cfg)
    slow = run(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, linear_fast_path=False), variant="slow"))
    assert fast["linear_fast_path"] and not slow["linear_fast_path"]
    assert abs(fast["test_top1"] - slow["test_top1"]) <= 0.5
    for a, b in zip(fast["history"], slow["history"]):
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-4 and abs(a["val_top1"] - b["val_top1"]) <= 0.5
    assert fast["deployed_test_top1"] == fast["test_top1"]
    from bench.predictions import load

    a, b = (load(next(tmp_path.rglob(f"{m}/val-seed0/predictions.npz")))["test"] for m in ("linear", "linear-slow"))
    assert a["target"].tolist() == b["target"].tolist() and a["fingerprint"] == b["fingerprint"]
    assert (a["pred"] != b["pred"]).sum() <= 5  # the same images in the same order; as the scores, 0.5 points at most
