"""The mini tasks are drawn once per sweep: the first run writes each split to the cache folder and the
others, in any process, read the same arrays back (bench/data/generated.py)."""
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
