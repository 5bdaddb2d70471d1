"""The training loop: schedule, determinism, mixup/cutmix, EMA and cooldown."""
import torch
from torch.utils.data import TensorDataset

from bench.config import TrainConfig
from bench.train.loop import train


def data(n=96, classes=5):
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, classes, (n,), generator=g))


def fit(tiny_vit, **kw):
    model = tiny_vit(5)
    cfg = TrainConfig(epochs=2, batch_size=32, lr=1e-3, warmup_epochs=1, progress=False, **kw)
    return model, train(model, data(), cfg, num_classes=5, seed=0, device=torch.device("cpu"),
                        on_epoch=lambda e, m: {"eval_is_model": m is model})


def test_same_seed_same_history(tiny_vit):
    a, b = fit(tiny_vit)[1], fit(tiny_vit)[1]
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]
    assert a["images_seen"] == 2 * 96 and a["train_seconds"] > 0


def test_warmup_cosine_then_cooldown_at_min_lr(tiny_vit):
    _, out = fit(tiny_vit, cooldown_epochs=2, min_lr=1e-5)
    lrs = [h["lr"] for h in out["history"]]
    # 3 steps per epoch; after warm-up (3 steps) the cosine over 6 steps is half-way at step 3
    assert len(lrs) == 4 and abs(lrs[0] - (1e-5 + 0.5 * (1e-3 - 1e-5))) < 1e-12
    assert lrs[1] == lrs[2] == lrs[3] == 1e-5  # end of the cosine, then cooldown at min_lr


def test_mixup_cutmix_and_ema(tiny_vit):
    model, out = fit(tiny_vit, mixup=0.8, cutmix=1.0, label_smoothing=0.1, ema_decay=0.9)
    ema = out["eval_model"]
    assert ema is not model and not out["history"][0]["eval_is_model"]  # evaluation used the EMA
    assert out["images_seen"] == 2 * 96  # 96 = 3 full batches of 32: nothing dropped
    diff = sum((p - q).abs().sum() for p, q in zip(model.parameters(), ema.parameters()))
    assert diff > 0
    assert all(h["train_loss"] == h["train_loss"] for h in out["history"])  # finite (not NaN)
