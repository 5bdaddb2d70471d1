"""Splits held where the model runs: per-batch normalisation and augmentation, and runs that match the loader's."""
import dataclasses

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from bench.data.batching import batches
from bench.data.on_device import (BatchDataset, as_batches, crop_boxes, nbytes, random_resized_crop_flip, resample,
                                  to_device, within)
from bench.data.splits import Split
from bench.data.torch_datasets import PixelDataset
from bench.data.transforms import normalize
from fixtures_data import config, fgvc_json_tree, vtab_tree

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def pixels(n=10, size=8, seed=0) -> PixelDataset:
    rng = np.random.default_rng(seed)
    return PixelDataset(rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8), np.arange(n) % 3, MEAN, STD)


def normalised(px: PixelDataset) -> torch.Tensor:
    """The split normalised up front, as the loader's PixelDataset normalises a batch."""
    return normalize(torch.from_numpy(px.pixels[px.index]), MEAN, STD)


def test_batches_are_normalised_as_the_loader_normalises_them():
    src = pixels()
    ref = normalised(src)
    data = as_batches(src)
    assert data.tensors[0].dtype == torch.uint8  # a quarter of the float split's memory
    got = torch.cat([x for x, _ in batches(data, 4)])
    assert torch.equal(got, ref)  # the same bits: a run's losses do not depend on where the split is held
    loader = torch.cat([x for x, _ in batches(src, 4)])  # the PixelDataset through a DataLoader
    assert torch.equal(loader, ref)
    labels = torch.cat([y for _, y in batches(data, 4)])
    assert labels.tolist() == src.labels.tolist()


def test_whole_image_box_is_the_identity_and_flip_mirrors():
    x = torch.rand(3, 3, 8, 6) * 255
    whole = torch.tensor([[0.0, 0.0, 6.0, 8.0]]).repeat(3, 1)
    assert torch.allclose(resample(x, whole), x, atol=1e-4)
    half = torch.tensor([[0.0, 0.0, 3.0, 4.0]]).repeat(3, 1)  # the top-left quarter, enlarged 2x
    out = resample(x, half)
    assert out.shape == x.shape and torch.allclose(out[..., 1:-1:2, 1:-1:2].mean(), x[..., :4, :3].mean(), atol=30)


def test_crop_boxes_follow_random_resized_crop():
    g = torch.Generator().manual_seed(0)
    h, w = 224, 224
    boxes = crop_boxes(4000, h, w, g)
    x1, y1, x2, y2 = boxes.unbind(1)
    cw, ch = x2 - x1, y2 - y1
    assert (x1 >= 0).all() and (y1 >= 0).all() and (x2 <= w).all() and (y2 <= h).all() and (cw > 0).all()
    area = cw * ch / (h * w)
    assert area.min() >= 0.08 - 0.01 and area.max() <= 1.0
    assert 0.45 < area.mean() < 0.62  # scale ~ U(0.08, 1) less the boxes that do not fit (torchvision: ~0.52)
    ratio = cw / ch
    assert ratio.min() >= 0.75 * 0.95 and ratio.max() <= 4 / 3 * 1.05
    assert len({tuple(b) for b in boxes.tolist()}) > 3900  # per image, not one box for the batch


def test_augmentation_is_per_image_reproducible_and_only_in_training():
    data = as_batches(pixels(n=16, size=16), augment="simple")
    x = data.tensors[0][:16]
    a = random_resized_crop_flip(x.float(), torch.Generator().manual_seed(1))
    b = random_resized_crop_flip(x.float(), torch.Generator().manual_seed(1))
    c = random_resized_crop_flip(x.float(), torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and 0 <= a.min() and a.max() <= 255
    train = next(batches(data, 16, torch.Generator().manual_seed(0)))[0]
    plain = next(batches(data, 16))[0]  # evaluation: no generator, no augmentation
    assert torch.equal(plain, normalised(pixels(n=16, size=16)))
    assert not torch.allclose(train.sort(0).values, plain.sort(0).values)


def test_to_device_moves_what_it_can_and_names_bad_modes():
    px = pixels()
    floats = TensorDataset(normalised(px), torch.from_numpy(px.labels))
    mini = TensorDataset(torch.zeros(4, 3, 8, 8), torch.zeros(4, dtype=torch.long))
    cpu = torch.device("cpu")
    test = {"test": Split("test", px, {"images": len(px)})}
    assert to_device(test, cpu, "auto")["test"] is test["test"]  # auto: only on CUDA
    assert to_device(test, cpu, "off")["test"] is test["test"]
    splits = {s: Split(s, d, {"images": len(d)}) for s, d in (("test", px), ("train", floats), ("val", mini))}
    moved = to_device(splits, cpu, "on")
    assert isinstance(moved["test"].dataset, BatchDataset) and moved["test"].dataset.tensors[0].dtype == torch.uint8
    assert isinstance(moved["train"].dataset, TensorDataset) and moved["train"].bad_images == 0
    assert moved["test"].info is splits["test"].info  # the record's entry travels with the split
    with pytest.raises(ValueError, match="valid: auto, on, off"):
        to_device(test, cpu, "sometimes")
    assert nbytes(px) == 10 * 3 * 8 * 8 + 8 * 10  # uint8 pixels + int64 labels


def test_auto_holds_the_small_splits_first_within_the_budget():
    gb = 2**30
    vtab = {"trainval": 1 * gb // 7, "test": 11 * gb}  # VTAB-1k dSprites: 1,000 train, 73,728 test images
    assert within(vtab, 80 * gb // 4) == ["trainval", "test"]  # an 80 GB GPU holds both
    assert within(vtab, 24 * gb // 4) == ["trainval"]  # a 24 GB GPU: the test split stays on the host
    assert within({"train": 3, "val": 2, "test": 4}, 6) == ["val", "train"]


def test_batch_aug_needs_simple_augmentation_and_a_cache(tmp_path, monkeypatch):
    from bench.data import load_split

    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    fgvc_json_tree(tmp_path / "fgvc" / "stanford_cars", "", ids=(1, 2, 3))
    base = config("fgvc/stanford_cars", tmp_path, num_classes=3, image_size=16, train_aug="simple", cache="memory",
                  batch_aug=True, splits={"train": 6, "val": 3, "trainval": 9, "test": 4})
    train = load_split(base, "train", MEAN, STD)
    assert isinstance(train, BatchDataset) and train.augment == "simple" and len(train) == 6
    assert isinstance(load_split(base, "test", MEAN, STD), (PixelDataset, BatchDataset))  # evaluation: unaugmented
    for bad in ({"cache": "none"}, {"train_aug": "timm"}):
        with pytest.raises(ValueError, match="batch_aug=true needs train_aug=simple"):
            load_split(dataclasses.replace(base, **bad), "train", MEAN, STD)


def test_a_run_with_data_on_the_device_matches_the_loader(tmp_path, monkeypatch):
    """On the CPU, `on` holds the memory-mapped test split as one uint8 tensor normalised per batch: same numbers."""
    from bench.data import load_split

    from bench.config import BackboneConfig, RunConfig, TrainConfig
    from bench.run.runner import run

    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    # trainval (8 images, 6 KiB) is read into memory; test (12 images, 9 KiB) stays memory-mapped
    monkeypatch.setattr("bench.data.splits.IN_MEMORY_BYTES", 7_000)
    vtab_tree(tmp_path / "data", "dtd", classes=3, sizes={"train": 6, "val": 2, "test": 12})
    ds = config("vtab/dtd", tmp_path / "data", splits={"train": 6, "val": 2, "trainval": 8, "test": 12}, image_size=16,
                num_classes=3, cache="disk")
    backbone = BackboneConfig(name="tiny_vit", arch="vit_tiny_patch16_224", pretrained=False,
                              kwargs={"img_size": 16, "patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2},
                              pretrained_cfg={"input_size": [3, 16, 16], "mean": list(MEAN), "std": list(STD)})
    assert isinstance(load_split(ds, "test", MEAN, STD), PixelDataset)  # what `off` evaluates through a DataLoader
    recs = {}
    for mode in ("off", "on"):
        cfg = RunConfig(method="ssf", dataset=ds, backbone=backbone, protocol="paper", results_dir=str(tmp_path / mode),
                        deploy_iters=0, save_weights=False,
                        train=TrainConfig(epochs=2, batch_size=4, lr=1e-2, progress=False, data_on_device=mode))
        recs[mode] = run(cfg)
    off, on = recs["off"], recs["on"]
    assert on["status"] == off["status"] == "completed"
    assert on["test_top1"] == off["test_top1"]
    assert [h["train_loss"] for h in on["history"]] == [h["train_loss"] for h in off["history"]]  # the same bits
    assert on["data"]["splits"]["test"]["images"] == off["data"]["splits"]["test"]["images"] == 12
    from bench.predictions import load

    saved = {mode: load(next((tmp_path / mode).rglob("predictions.npz")))["test"] for mode in recs}
    assert saved["on"]["pred"].tolist() == saved["off"]["pred"].tolist()  # image by image, in the listing's order
    labels = load_split(ds, "test", MEAN, STD).labels.tolist()
    assert saved["on"]["target"].tolist() == saved["off"]["target"].tolist() == labels
    assert saved["on"]["fingerprint"] == on["test_fingerprint"] == off["test_fingerprint"]


def test_a_run_with_batch_augmentation_trains_on_augmented_batches(tmp_path, monkeypatch):
    from bench.config import BackboneConfig, RunConfig, TrainConfig
    from bench.run.runner import run

    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    fgvc_json_tree(tmp_path / "fgvc" / "stanford_cars", "", ids=(1, 2, 3))
    ds = config("fgvc/stanford_cars", tmp_path, num_classes=3, image_size=16, train_aug="simple", cache="disk",
                batch_aug=True, splits={"train": 6, "val": 3, "trainval": 9, "test": 4})
    backbone = BackboneConfig(name="tiny_vit", arch="vit_tiny_patch16_224", pretrained=False,
                              kwargs={"img_size": 16, "patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2},
                              pretrained_cfg={"input_size": [3, 16, 16], "mean": list(MEAN), "std": list(STD)})
    seen = []
    real = BatchDataset.batch_transform
    monkeypatch.setattr(BatchDataset, "batch_transform", lambda self, x, g: seen.append(g is not None) or real(self, x, g))
    cfg = RunConfig(method="bias", dataset=ds, backbone=backbone, results_dir=str(tmp_path / "results"), deploy_iters=0,
                    save_weights=False, train=TrainConfig(epochs=2, batch_size=4, lr=1e-2, progress=False, mixup=0.0,
                                                          cutmix=0.0, ema_decay=0.0))
    rec = run(cfg)
    assert rec["status"] == "completed" and rec["data"]["splits"]["train"]["images"] == 6
    assert seen.count(True) == 4  # 2 epochs x 2 training batches (6 images, batch 4), each augmented


def test_crops_agree_with_an_affine_grid_sample_of_the_same_boxes():
    """Two independent resamplers of one box (roi_align vs affine_grid + grid_sample) give the same pixels."""
    import torch.nn.functional as F

    x = torch.rand(16, 3, 24, 24) * 255
    boxes = crop_boxes(16, 24, 24, torch.Generator().manual_seed(3))
    x1, y1, x2, y2 = boxes.unbind(1)
    theta = torch.zeros(16, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = (x2 - x1) / 24, (x1 + x2) / 24 - 1
    theta[:, 1, 1], theta[:, 1, 2] = (y2 - y1) / 24, (y1 + y2) / 24 - 1
    grid = F.affine_grid(theta, (16, 3, 24, 24), align_corners=False)
    ref = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    assert (resample(x, boxes) - ref).abs().max() < 0.5  # of 255: the two differ only at the image border
