"""The mini tasks are drawn once per sweep: the first run writes each split to the cache folder and the
others, in any process, read the same arrays back (bench/data/generated.py)."""
import dataclasses
import hashlib
import warnings

import numpy as np
import pytest

from bench.config import DatasetConfig
from bench.data import generated, mini


def task(tmp_path, name="count") -> DatasetConfig:
    return DatasetConfig(name=f"mini/{name}", benchmark="mini", task=name, group="structured", num_classes=8,
                         image_size=32, cache_dir=str(tmp_path / "cache"))


@pytest.fixture
def draws(monkeypatch):
    """Counts mini.generate calls by (task, split); each test starts with an empty in-process cache."""
    counted: dict = {}
    real = mini.generate

    def counting(name, split, data_seed=0, n=None):
        counted[(name, split)] = counted.get((name, split), 0) + 1
        return real(name, split, data_seed, n)

    monkeypatch.setattr(mini, "generate", counting)
    generated.arrays.cache_clear()
    yield counted
    generated.arrays.cache_clear()


def digest(a: np.ndarray) -> str:
    return hashlib.sha256(a.tobytes()).hexdigest()


def test_a_sweep_draws_each_split_once_and_reads_the_same_arrays(tmp_path, draws):
    cfg = task(tmp_path)
    seen = []
    for _ in range(3):  # three runs, each a fresh process: nothing kept in memory between them
        generated.arrays.cache_clear()
        seen.append({s: generated.split_arrays(cfg, s) for s in ("train", "val", "test", "trainval")})
    assert draws == {("count", "train"): 1, ("count", "val"): 1, ("count", "test"): 1}
    direct = {s: mini.generate("count", s, 0) for s in ("train", "val", "test")}
    for run in seen:
        for s in ("train", "val", "test"):
            assert digest(run[s][0]) == digest(direct[s][0]) and np.array_equal(run[s][1], direct[s][1])
        assert np.array_equal(run["trainval"][0], np.concatenate([direct["train"][0], direct["val"][0]]))
    assert sorted(p.name.split("-seed")[0] for p in (tmp_path / "cache" / "mini").iterdir()) == \
        ["count-test", "count-train", "count-val"]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "pickle", "other_arrays"])
def test_a_damaged_cache_file_is_drawn_again_and_replaced(tmp_path, draws, damage):
    cfg = task(tmp_path)
    images, labels = generated.split_arrays(cfg, "val")
    path = generated.cache_file(cfg.cache_dir, "count", "val", 0)
    good = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"not an npz file")
    elif damage == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif damage == "pickle":  # an object array would need pickle to load: refused, never unpickled
        with open(path, "wb") as f:
            np.savez(f, images=np.array([object()], dtype=object), labels=labels)
    else:
        with open(path, "wb") as f:
            np.savez(f, images=images[:, :1], labels=labels)
    generated.arrays.cache_clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = generated.split_arrays(cfg, "val")
    assert len([w for w in caught if "drawing the split again" in str(w.message)]) == 1
    assert draws[("count", "val")] == 2
    assert np.array_equal(again[0], images) and np.array_equal(again[1], labels)
    assert path.read_bytes() == good  # replaced by what this code writes


def test_the_file_name_follows_the_generator(tmp_path, monkeypatch):
    before = generated.cache_file(str(tmp_path), "count", "test", 0)
    monkeypatch.setattr(generated, "GENERATOR_SOURCES", ("mini.py",))
    generated.generator_hash.cache_clear()
    try:
        assert generated.cache_file(str(tmp_path), "count", "test", 0) != before
    finally:
        generated.generator_hash.cache_clear()


# --- dataset.train_subset on a mini task: the listed splits' rule (bench/data/subset.py) -------------
def test_a_mini_run_with_a_train_subset_trains_on_the_subset(tmp_path):
    """train_subset=200 of mini/count's 800 training images: 4 steps at batch 64 (13 for the whole split),
    the record's split entry and data version those of the subset, the same images as the listed splits'
    stratified rule picks; evaluation splits whole."""
    from bench.config import BackboneConfig, RunConfig, TrainConfig
    from bench.data.fingerprint import fingerprint, generated_ids
    from bench.data.splits import current_version
    from bench.data.subset import stratified
    from bench.run.runner import run
    from conftest import TINY_VIT

    ds = dataclasses.replace(task(tmp_path), train_subset=200, subset_seed=3)
    backbone = BackboneConfig(name="tiny_vit_mini", arch="vit_tiny_patch16_224", pretrained=False, kwargs=TINY_VIT,
                              pretrained_cfg={"input_size": [3, 32, 32], "mean": [0.5] * 3, "std": [0.5] * 3})
    cfg = RunConfig(method="linear", dataset=ds, backbone=backbone, protocol="val", results_dir=str(tmp_path / "out"),
                    deploy_iters=0, save_weights=False, train=TrainConfig(epochs=1, batch_size=64, progress=False))
    rec = run(cfg)
    assert rec["status"] == "completed", rec.get("error")
    assert (rec["train_subset"], rec["subset_seed"], rec["optimizer_steps"]) == (200, 3, 4)
    splits = rec["data"]["splits"]
    labels = generated.split_arrays(ds, "train")[1]  # the val protocol trains on train
    keep = stratified(labels, 200, 3)
    ids = generated_ids("count", "train", 0, 800)
    assert splits["train"]["images"] == 200
    assert splits["train"]["fingerprint"] == fingerprint([ids[i] for i in keep], labels[keep].tolist())
    assert splits["test"]["images"] == 3000
    assert rec["data"]["version"] == current_version(ds, list(splits))  # the sweeper sees the run as current


def test_without_a_subset_a_mini_run_reads_the_whole_split(tmp_path):
    """The demo's runs (no train_subset): the same tensors and fingerprints as before the subset applied."""
    import torch

    from bench.data.fingerprint import fingerprint, generated_ids
    from bench.data.splits import load_splits

    ds = task(tmp_path)
    out = load_splits(ds, ["train", "trainval", "test"], (0.5,) * 3, (0.5,) * 3)
    for s, split in out.items():
        images, labels = generated.split_arrays(ds, s)
        parts = ("train", "val") if s == "trainval" else (s,)
        ids = [i for p in parts for i in generated_ids("count", p, 0, len(generated.split_arrays(ds, p)[1]))]
        assert torch.equal(split.dataset.tensors[0], torch.from_numpy(images).float().div(255).sub(0.5).div(0.5))
        assert torch.equal(split.dataset.tensors[1], torch.from_numpy(labels))
        assert split.info == {"images": len(labels), "fingerprint": fingerprint(ids, labels.tolist())}
