"""Few-shot, domain-generalisation and many-shot data: NOAH's list files, the stratified subset,
and runs through launch.py on generated fixture trees."""
import json

import numpy as np
import pytest

from bench.data import load_split
from bench.data.check import main as check_main
from bench.data.errors import DataError
from bench.data.splits import listing
from bench.data.subset import stratified
from conftest import run_cli
from fixtures_data import config, noah_domain_tree, noah_fewshot_tree

MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def fewshot(tmp_path, **over):
    """The fewshot/food101 config on a fixture tree (built once per test folder, then left as the test edits it)."""
    if not (tmp_path / "few-shot" / "food-101").exists():
        noah_fewshot_tree(tmp_path / "few-shot" / "food-101")
    return config("fewshot/food101", tmp_path, **({"num_classes": 3, "image_size": 16, "splits": {"val": 3, "test": 4},
                                                    "cache": "none"} | over))


def test_the_list_is_chosen_by_shots_and_seed(tmp_path):
    cfg = fewshot(tmp_path, shots=2, fewshot_seed=1)
    train = listing(cfg, "train")
    assert train.sources[0].name == "train_meta.list.num_shot_2.seed_1"
    assert len(train) == 2 * 3 and train.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert train.paths[0].endswith("few-shot/food-101/images/class0/1.jpg")  # seed 1 drew images 1 and 2
    assert listing(cfg, "trainval").paths == train.paths  # NOAH trains on the whole list
    assert listing(cfg, "test").sources[0].name == "test_meta.list" and len(listing(cfg, "test")) == 4
    assert listing(cfg, "val").sources[0].name == "val_meta.list"
    other = listing(fewshot(tmp_path, shots=2, fewshot_seed=0), "train")
    assert other.paths != train.paths


def test_missing_lists_and_bad_lines_name_the_file_line_and_value(tmp_path):
    with pytest.raises(DataError, match=r"dataset.shots=4 dataset.fewshot_seed=0: .*num_shot_4.seed_0 not found; "
                                        r"lists present: shots 1: seeds 0,1; shots 2: seeds 0,1"):
        listing(fewshot(tmp_path, shots=4), "train")
    ann = tmp_path / "few-shot" / "food-101" / "annotations"
    (ann / "test_meta.list").write_text("val/0.jpg 0\nval/1.jpg 7\n")
    with pytest.raises(DataError, match=r"test_meta.list:2: label 7 out of range for 3 classes"):
        listing(fewshot(tmp_path, splits={}), "test")
    (ann / "test_meta.list").write_text("val/0.jpg 0\nnope/9.jpg 1\n")
    with pytest.raises(DataError, match=r"test_meta.list:2: image .*nope/9.jpg not found"):
        listing(fewshot(tmp_path, splits={}), "test")
    (ann / "test_meta.list").write_text("val/0.jpg zero\n")
    with pytest.raises(DataError, match=r"test_meta.list:1: label 'zero' is not an integer"):
        listing(fewshot(tmp_path, splits={}), "test")


def test_check_command_names_the_defect(tmp_path, capsys):
    noah_fewshot_tree(tmp_path / "few-shot" / "food-101")
    ann = tmp_path / "few-shot" / "food-101" / "annotations"
    (ann / "val_meta.list").write_text("val/0.jpg 0\nval/1.jpg 1\nval/2.jpg 200\n")
    rc = check_main(["fewshot/food101", "--data-root", str(tmp_path), "--set", "num_classes=3",
                     "--set", "splits={}", "--no-decode"])
    out = capsys.readouterr().out
    assert rc == 1 and "FAIL  fewshot/food101:" in out and "val_meta.list:3: label 200 out of range" in out


def test_stratified_subset_is_balanced_deterministic_and_seeded():
    labels = np.repeat(np.arange(4), [10, 10, 10, 30])  # 60 images, one class three times as large
    a = stratified(labels, 12, seed=0)
    assert np.bincount(labels[a]).tolist() == [2, 2, 2, 6]  # 12 x 10/60 = 2, 12 x 30/60 = 6
    assert a.tolist() == sorted(a.tolist()) and np.array_equal(a, stratified(labels, 12, seed=0))
    assert not np.array_equal(a, stratified(labels, 12, seed=1))
    b = stratified(labels, 7, seed=0)  # shares 7/6 each and 3.5: floors 1,1,1,3 + one left over
    assert len(b) == 7 and np.bincount(labels[b]).tolist() == [1, 1, 1, 4]  # the largest remainder (0.5)
    assert len(stratified(labels, 60, seed=3)) == 60


def test_subset_larger_than_the_split_is_a_one_line_error(tmp_path):
    cfg = fewshot(tmp_path, shots=2, train_subset=4)
    assert len(listing(cfg, "train")) == 4 and np.bincount(listing(cfg, "train").labels).tolist() == [2, 1, 1]
    assert len(listing(cfg, "test")) == 4  # evaluation splits are never cut
    with pytest.raises(DataError, match=r"dataset.train_subset=7 is larger than the 'train' split \(6 images\)"):
        listing(fewshot(tmp_path, shots=2, train_subset=7), "train")


def test_noah_evaluation_pixels_squash_to_256_then_crop(tmp_path):
    from bench.data.transforms import eval_pixels
    from PIL import Image

    cfg = fewshot(tmp_path)
    assert (cfg.resize, cfg.crop_pct, cfg.train_aug, cfg.auto_augment) == ("squash_crop", 0.875, "timm",
                                                                           "rand-m9-mstd0.5-inc1")
    big = config("fewshot/food101", tmp_path)  # 224 px as configured
    out = eval_pixels(big)(Image.new("RGB", (500, 300)))
    assert out.size == (224, 224)
    x, _ = load_split(cfg, "test", MEAN, STD)[0]
    assert tuple(x.shape) == (3, 16, 16)


@pytest.fixture(scope="module")
def fewshot_sweep(tmp_path_factory):
    """One sweep over shots and list seeds of a fixture tree, through launch.py, then analyze.py."""
    root = tmp_path_factory.mktemp("fs")
    noah_fewshot_tree(root / "data" / "few-shot" / "food-101")
    common = ["dataset.num_classes=3", "dataset.image_size=32", "dataset.splits={val: 3, test: 4}",
              f"dataset.data_root={root / 'data'}", f"++dataset.cache_dir={root / 'cache'}", "backbone=tiny_vit",
              "train.epochs=1", "train.batch_size=2", "train.progress=false", "deploy_iters=0",
              f"results_dir={root / 'results'}"]
    status = run_cli("launch.py", "--status", "-m", "method=linear,bias", "dataset=fewshot/food101",
                     "dataset.shots=1,2", "dataset.fewshot_seed=0,1", *common, timeout=300)
    assert status.returncode == 0, status.stderr[-2000:]
    proc = run_cli("launch.py", "-m", "method=linear,bias", "dataset=fewshot/food101", "dataset.shots=1,2",
                   "dataset.fewshot_seed=0,1", *common, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, status, proc


@pytest.mark.process
def test_fewshot_grid_composes_and_completes(fewshot_sweep):
    root, status, proc = fewshot_sweep
    assert "8 runs" in status.stdout + status.stderr
    recs = [json.loads(p.read_text()) for p in (root / "results").rglob("record.json")]
    assert len(recs) == 8 and all(r["status"] == "completed" for r in recs)
    assert sorted((r["method"], r["shots"], r["fewshot_seed"]) for r in recs) == sorted(
        (m, k, s) for m in ("linear", "bias") for k in (1, 2) for s in (0, 1))
    one = next(r for r in recs if r["shots"] == 1 and r["method"] == "bias")
    assert one["recipe"] == "noah" and one["data"]["splits"]["train"]["images"] == 3
    assert one["optimizer_steps"] == 1  # 3 images, batch 2 (even: mixup pairs), drop_last: one step
    two = next(r for r in recs if r["shots"] == 2 and r["method"] == "bias")
    assert two["optimizer_steps"] == 3 and two["data"]["splits"]["train"]["images"] == 6


@pytest.mark.process
def test_domain_generalisation_scores_every_target(tmp_path):
    data = tmp_path / "data"
    noah_fewshot_tree(data / "few-shot" / "imagenet", classes=3, shots=(16,), seeds=(0,), n_val=4, image_dir="train")
    # evaluation images under val/ (split_dirs), labels are ImageNet indices (here 0..2 of 1000)
    src = data / "few-shot" / "imagenet"
    for name in ("val", "test"):
        for i in range(4):
            (src / "val" / name).mkdir(parents=True, exist_ok=True)
            (src / "val" / name / f"{i}.jpg").write_bytes((src / "train" / name / f"{i}.jpg").read_bytes())
    from bench.data.robustness import subset_classes

    a_classes = subset_classes("imagenet_a")[1][:3].tolist()
    noah_domain_tree(data / "domain-generalization" / "imagenetv2", [0, 1, 2, 999])
    noah_domain_tree(data / "domain-generalization" / "imagenet-sketch", [5, 6])
    noah_domain_tree(data / "domain-generalization" / "imagenet-adversarial", a_classes)
    noah_domain_tree(data / "domain-generalization" / "imagenet-rendition", a_classes[:2])
    proc = run_cli("launch.py", "method=linear", "dataset=dg/imagenet", "dataset.image_size=32",
                   "dataset.splits={val: 4, test: 4}", f"dataset.data_root={data}", "backbone=tiny_vit",
                   f"++dataset.cache_dir={tmp_path / 'cache'}", "train.epochs=1", "train.batch_size=16",
                   "train.progress=false", "deploy_iters=0", f"results_dir={tmp_path / 'results'}", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = (tmp_path / "results").rglob("record.json")
    rec = json.loads(path.read_text())
    assert rec["status"] == "completed", rec.get("error")
    rob = rec["robustness"]
    assert (rob["imagenet_v2_images"], rob["imagenet_sketch_images"], rob["imagenet_a_images"],
            rob["imagenet_r_images"]) == (4, 2, 3, 2)
    for name in ("imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r"):
        assert 0 <= rob[f"{name}_top1"] <= 100
    assert "imagenet_a_top1_1000way" in rob and "imagenet_v2_top1_1000way" not in rob
    assert rec["shots"] == 16 and rec["data"]["splits"]["train"]["images"] == 3 * 16
    # every target's per-image predictions beside the record: those its score used (A and R: over their
    # 200 classes, as ImageNet indices), with 1000-way labels
    from bench.predictions import load

    saved = load(path.parent)
    assert set(saved) == {"test", "imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r"}
    assert saved["imagenet_v2"]["target"].tolist() == [0, 1, 2, 999] and saved["imagenet_v2"]["pred"].dtype == np.int16
    assert set(saved["imagenet_a"]["pred"].tolist()) <= set(subset_classes("imagenet_a")[1].tolist())
    for name in ("imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r"):
        assert rob[f"{name}_top1"] == 100 * np.mean(saved[name]["pred"] == saved[name]["target"])
        assert saved[name]["fingerprint"].startswith("sha256:")
    assert rec["predictions_complete"] is True and rec["test_fingerprint"] == saved["test"]["fingerprint"]


@pytest.mark.process
def test_many_shot_sweep_composes_and_completes(tmp_path):
    """dataset.train_subset as a sweep: --status shows the runs, each trains on its stratified subset."""
    noah_fewshot_tree(tmp_path / "data" / "few-shot" / "food-101")
    args = ["-m", "method=linear", "dataset=fewshot/food101", "dataset.shots=2", "dataset.train_subset=3,6,0",
            "dataset.num_classes=3", "dataset.image_size=32", "dataset.splits={val: 3, test: 4}",
            f"dataset.data_root={tmp_path / 'data'}", f"++dataset.cache_dir={tmp_path / 'cache'}", "backbone=tiny_vit",
            "train.epochs=1", "train.batch_size=2", "train.progress=false", "deploy_iters=0",
            f"results_dir={tmp_path / 'results'}"]
    status = run_cli("launch.py", "--status", *args, timeout=300)
    assert status.returncode == 0 and "3 runs" in status.stdout + status.stderr, status.stderr[-2000:]
    proc = run_cli("launch.py", *args, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = [json.loads(p.read_text()) for p in (tmp_path / "results").rglob("record.json")]
    sizes = sorted((r["train_subset"] or 0, r["data"]["splits"]["train"]["images"]) for r in recs)
    assert sizes == [(0, 6), (3, 3), (6, 6)] and all(r["status"] == "completed" for r in recs)


def test_a_domain_target_label_outside_imagenet_names_its_line(tmp_path):
    from bench.data.robustness import domain_listing

    noah_domain_tree(tmp_path / "domain-generalization" / "imagenetv2", [3, 1200])
    cfg = config("dg/imagenet", tmp_path, num_classes=1000)
    with pytest.raises(DataError, match=r"val_meta.list:2: label 1200 out of range for 1000 classes"):
        domain_listing(cfg, "imagenet_v2")
    with pytest.raises(KeyError, match="unknown domain-generalisation target 'nope'"):
        domain_listing(cfg, "nope")
