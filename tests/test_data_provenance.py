"""Where a run's pixels came from: JPEG quality estimates, data versions that follow the bytes and not
the path, sweeps that never take a run on other data for a finished one, tables that never pool them."""
import io
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench import records
from bench.analysis.tables import leaderboard, with_labels
from bench.data import jpeg, splits, version
from bench.data.splits import current_version
from bench.launch import sweep
from fixtures_data import config, vtab_tree

MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
SPLITS = {"train": 6, "val": 2, "trainval": 8, "test": 5}


@pytest.mark.parametrize("quality", [75, 95, 30])
def test_jpeg_quality_estimate_within_5(quality):
    rng = np.random.default_rng(quality)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(buf, "JPEG", quality=quality)
    buf.seek(0)
    assert abs(jpeg.estimate_quality(Image.open(buf)) - quality) <= 5
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PNG")
    buf.seek(0)
    assert jpeg.estimate_quality(Image.open(buf)) is None


def _cfg(data_root, cache):
    import dataclasses

    return dataclasses.replace(config("vtab/dtd", data_root, num_classes=3, splits=SPLITS, image_size=32),
                               cache_dir=str(cache))


def _describe(data_root, cache):
    cfg = _cfg(data_root, cache)
    return splits.describe(cfg, splits.load_splits(cfg, ("trainval", "test"), MEAN, STD)), cfg


def _reencode(task_root, quality=95):
    for p in sorted((task_root / "images" / "test").glob("*.jpg")):
        img = Image.open(p).convert("RGB")
        img.save(p, "JPEG", quality=quality)


def test_record_names_pixel_format_quality_and_a_version_that_follows_bytes_not_paths(tmp_path):
    vtab_tree(tmp_path / "a", "dtd", classes=3)
    data, _ = _describe(tmp_path / "a", tmp_path / "cache")
    assert data["pixel_format"] == "jpeg" and data["jpeg_quality"] == 75  # PIL's default, as NOAH's converter
    assert data["splits"]["test"]["pixels"]["format"] == "jpeg" and data["version"].startswith("sha256:")
    shutil.copytree(tmp_path / "a", tmp_path / "moved")  # another data_root, new mtimes: the same data
    moved, _ = _describe(tmp_path / "moved", tmp_path / "cache")
    assert moved["version"] == data["version"] and moved["root"] != data["root"]
    _reencode(tmp_path / "moved" / "vtab-1k" / "dtd")  # same names and labels, other bytes
    other, _ = _describe(tmp_path / "moved", tmp_path / "cache")
    assert other["splits"]["test"]["fingerprint"] == data["splits"]["test"]["fingerprint"]
    assert other["splits"]["test"]["content"] != data["splits"]["test"]["content"]
    assert other["version"] != data["version"] and other["jpeg_quality"] == [75, 95]  # trainval 75, test 95
    assert other["splits"]["test"]["pixels"]["jpeg_quality"] == 95


def test_content_hash_is_cached_by_stat(tmp_path, monkeypatch):
    vtab_tree(tmp_path / "a", "dtd", classes=3)
    cfg = _cfg(tmp_path / "a", tmp_path / "cache")
    first = current_version(cfg, ("trainval", "test"))
    assert first and list((tmp_path / "cache" / version.CACHE_SUBDIR).glob("*.json"))
    monkeypatch.setattr(version, "file_digest", lambda p: pytest.fail("hashed again although nothing changed"))
    assert current_version(cfg, ("test", "trainval")) == first


def _completed_record(run_dir, data_version):
    rec = {"status": "completed", "method": "linear", "dataset": "vtab/dtd", "backbone": "b", "seed": 0,
           "protocol": "paper", "data": {"version": data_version}}
    records.write_json_atomic(run_dir / records.RECORD, rec)


def test_sweep_reruns_a_run_whose_data_changed_and_skips_after_moving_data_root(tmp_path):
    vtab_tree(tmp_path / "a", "dtd", classes=3)
    cache = tmp_path / "cache"
    recorded, cfg = _describe(tmp_path / "a", cache)
    run_dir = records.run_dir(tmp_path / "results", "b", "vtab/dtd", "linear", "", "paper", 0)
    _completed_record(run_dir, recorded["version"])
    now = lambda c: (lambda: current_version(c, ("trainval", "test")))

    shutil.move(tmp_path / "a", tmp_path / "moved")  # the same data elsewhere: still finished
    moved = _cfg(tmp_path / "moved", cache)
    assert sweep.Inspector(queue=dict).inspect(run_dir, data_version=now(moved)).state == "completed"

    _reencode(tmp_path / "moved" / "vtab-1k" / "dtd")  # other bytes under the same names: not finished
    st = sweep.Inspector(queue=dict).inspect(run_dir, data_version=now(moved))
    assert st.state == "missing" and st.other_data == recorded["version"] and "other data" in st.detail
    todo, line = sweep.plan([st])
    assert todo == [st] and "1 completed on other data" in line
    kept = sweep.archive(st)  # the old outcome stays for analyze.py; the rerun starts in a clean folder
    assert (kept / records.RECORD).is_file() and not run_dir.exists() and kept.name.startswith("paper-seed0~data-")
    missing = _cfg(tmp_path / "nowhere", cache)
    _completed_record(run_dir, "sha256:other")
    assert sweep.Inspector(queue=dict).inspect(run_dir, data_version=now(missing)).state == "completed"


def test_two_data_versions_of_one_task_are_two_rows():
    base = {"status": "completed", "method": "lora", "variant": "", "backbone": "vitb", "protocol": "paper",
            "benchmark": "vtab", "seed": 0}
    df = pd.DataFrame([base | {"dataset": "vtab/dtd", "test_top1": 50.0, "data": {"version": "sha256:aaaaaaaa11"}},
                       base | {"dataset": "vtab/dtd", "test_top1": 70.0, "data": {"version": "sha256:bbbbbbbb22"},
                               "seed": 1},
                       base | {"dataset": "vtab/cifar", "test_top1": 30.0, "data": {"version": "sha256:cccccccc33"}},
                       base | {"dataset": "vtab/cifar", "test_top1": 40.0, "data": {"version": "sha256:cccccccc33"},
                               "seed": 1}])
    labels = with_labels(df)["label"].tolist()
    assert labels == ["lora[data aaaaaaaa]", "lora[data bbbbbbbb]", "lora", "lora"]
    t = leaderboard(df, ["vtab/dtd", "vtab/cifar"])
    assert t.loc[("vitb", "lora[data aaaaaaaa]"), "vtab/dtd"] == 50.0
    assert t.loc[("vitb", "lora[data bbbbbbbb]"), "vtab/dtd"] == 70.0 and t.loc[("vitb", "lora"), "vtab/cifar"] == 35.0
    other_protocol = df.assign(protocol=["paper", "val", "paper", "paper"])  # protocols read other splits anyway
    assert with_labels(other_protocol)["label"].tolist()[:2] == ["lora", "lora"]


@pytest.mark.process
def test_sweep_through_launch_reruns_changed_data_and_skips_moved_data(tmp_path, monkeypatch):
    import json

    from conftest import run_cli

    vtab_tree(tmp_path / "a", "dtd", classes=3)
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    results = tmp_path / "results"
    grid = lambda root: run_cli(
        "launch.py", "-m", "method=linear", "dataset=vtab/dtd", "backbone=vit_tiny_mini", "protocol=paper", "train.epochs=1",
        "train.cooldown_epochs=0", "train.warmup_epochs=0", "train.progress=false", "deploy_iters=0",
        "save_weights=false", "dataset.image_size=32", "dataset.num_classes=3",
        "dataset.splits={train:6,val:2,trainval:8,test:5}", "train.batch_size=4", f"dataset.data_root={root}",
        f"results_dir={results}", timeout=300)
    first = grid(tmp_path / "a")
    assert first.returncode == 0 and "submitting 1" in first.stdout, first.stderr[-3000:]
    (rec_path,) = results.rglob("record.json")
    v1 = json.loads(rec_path.read_text())["data"]["version"]

    shutil.move(tmp_path / "a", tmp_path / "b")  # the same data under another data_root
    moved = grid(tmp_path / "b")
    assert moved.returncode == 0 and "1 completed" in moved.stdout and "submitting 0" in moved.stdout, moved.stdout

    _reencode(tmp_path / "b" / "vtab-1k" / "dtd")  # the test images re-encoded, same names
    changed = grid(tmp_path / "b")
    assert changed.returncode == 0, changed.stderr[-3000:]
    assert "1 completed on other data" in changed.stdout and "submitting 1" in changed.stdout
    (kept,) = rec_path.parent.parent.glob("paper-seed0~data-*")
    assert json.loads((kept / "record.json").read_text())["data"]["version"] == v1
    assert json.loads(rec_path.read_text())["data"]["version"] not in (None, v1)
