"""Per-image test predictions (`predictions.npz` beside each completed record): the arrays behind
the recorded score, in the split's order, with its fingerprint; robustness targets alike; none for
a run that did not complete; written atomically."""
import dataclasses
import json
import zipfile

import numpy as np
import pytest
import torch

import bench.run.runner
from bench import predictions, records
from bench.config import DatasetConfig, RunConfig, TrainConfig, backbone_config
from bench.data import load_split
from bench.data.mini import SPLIT_SIZES
from bench.data import robustness as R
from bench.run.runner import run
from bench.train.evaluate import evaluate_robustness, predict

MINI = DatasetConfig("mini/count", "mini", "count", "structured", 8, 32)


def config(tmp_path, method="ssf", protocol="paper", **train):
    return RunConfig(method=method, dataset=MINI, backbone=backbone_config("vit_tiny_mini"), protocol=protocol,
                     results_dir=str(tmp_path), deploy_iters=0, save_weights=False,
                     train=TrainConfig(**{"epochs": 2, "batch_size": 64, "lr": 1e-2, "progress": False} | train))


def saved(rec: dict, tmp_path) -> tuple[dict, dict]:
    (path,) = tmp_path.rglob(records.RECORD)
    assert json.loads(path.read_text()) == json.loads(json.dumps(rec, default=str))  # the record on disk is this one
    assert rec["predictions"] == records.PREDICTIONS and (path.parent / records.PREDICTIONS).is_file()
    return predictions.load(path.parent), path.parent


def check_test_split(rec: dict, arrays: dict, cfg: RunConfig) -> None:
    test = arrays["test"]
    assert test["pred"].dtype == np.int8 and test["target"].dtype == np.int8  # 8 classes
    assert rec["test_top1"] == 100 * np.mean(test["pred"] == test["target"])  # exactly the recorded score
    assert test["fingerprint"] == rec["test_fingerprint"] == rec["data"]["splits"]["test"]["fingerprint"]
    labels = load_split(cfg.dataset, "test", (0.5,) * 3, (0.5,) * 3).tensors[1].numpy()
    assert np.array_equal(test["target"], labels)  # the split's labels, in its order
    assert rec["predictions_images"] == len(labels) == SPLIT_SIZES["test"]
    assert rec["predictions_complete"] is True
    assert len(np.unique(test["pred"])) > 1  # trained predictions, not a constant


def test_paper_protocol_saves_the_final_epochs_test_predictions(tmp_path, monkeypatch):
    evaluated = []
    real = bench.run.runner.predict
    monkeypatch.setattr(bench.run.runner, "predict", lambda m, d, *a, **k: evaluated.append(len(d)) or real(m, d, *a, **k))
    cfg = config(tmp_path, "linear", linear_fast_path=False)  # the epoch loop: the whole model scored every epoch
    rec = run(cfg)
    assert rec["status"] == "completed" and rec["test_top1"] == rec["history"][-1]["test_top1"]
    # once per epoch, the last of them saved: no extra pass over the test split
    assert evaluated == [SPLIT_SIZES["test"]] * 2
    arrays, folder = saved(rec, tmp_path)
    check_test_split(rec, arrays, cfg)
    assert set(np.load(folder / records.PREDICTIONS).files) == {"pred", "target", "fingerprint"}


def test_val_protocol_with_the_linear_fast_path(tmp_path):
    from safetensors.torch import load_file

    from bench.models import build_backbone, data_config, normalization

    cfg = dataclasses.replace(config(tmp_path, "linear", "val", epochs=3, lr=0.05), save_weights=True)
    rec = run(cfg)
    assert rec["status"] == "completed" and rec["linear_fast_path"] is True and "val_top1" in rec
    arrays, folder = saved(rec, tmp_path)
    check_test_split(rec, arrays, cfg)
    # the head scored on the extracted features predicts as the whole trained model does on the images
    model = build_backbone(cfg.backbone, cfg.dataset.num_classes)
    model.load_state_dict(load_file(str(folder / records.WEIGHTS)), strict=False)  # the trained head
    test = load_split(cfg.dataset, "test", *normalization(cfg.dataset.norm, data_config(model)))
    pred, target = predict(model, test, 250, torch.device("cpu"), progress=False)
    assert np.array_equal(target, arrays["test"]["target"])
    assert np.mean(pred == arrays["test"]["pred"]) >= 0.999  # the head's input rounded apart: a near-tie may flip


def test_a_run_that_fails_leaves_no_predictions_and_removes_an_earlier_attempts(tmp_path, monkeypatch):
    cfg = config(tmp_path, "linear", epochs=1)
    assert run(cfg)["status"] == "completed"
    folder = next(tmp_path.rglob(records.RECORD)).parent
    assert (folder / records.PREDICTIONS).is_file()

    def broken(*a, **k):
        raise RuntimeError("deploy failed")

    monkeypatch.setattr(bench.run.runner, "deploy", broken)  # fails after the test split was scored
    with pytest.raises(RuntimeError, match="deploy failed"):
        run(cfg)
    rec = json.loads((folder / records.RECORD).read_text())
    assert rec["status"] == "failed" and "predictions" not in rec and "test_fingerprint" not in rec
    assert sorted(p.name for p in folder.iterdir()) == [records.RECORD]  # no predictions, no temporary


def test_the_file_is_written_atomically(tmp_path, monkeypatch):
    path = tmp_path / records.PREDICTIONS
    entries = predictions.arrays(np.arange(5), np.arange(5), "sha256:x", 5)
    predictions.save(path, entries)
    before = path.read_bytes()
    real = np.savez_compressed

    def half_then_die(f, **arrays):
        real(f, **arrays)
        f.truncate(10)
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", half_then_die)
    with pytest.raises(OSError, match="disk full"):
        predictions.save(path, predictions.arrays(np.zeros(5), np.arange(5), "sha256:y", 5))
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == [records.PREDICTIONS]


def test_file_format_and_size():
    """The contract's keys and dtypes; 100,000 images of a 1000-class task take a few bytes each."""
    rng = np.random.default_rng(0)
    target = np.repeat(np.arange(1000), 100)  # class-folder order
    pred = np.where(rng.random(len(target)) < 0.8, target, rng.integers(0, 1000, len(target)))  # 80 % right
    entries = predictions.arrays(pred, target, "sha256:abc", 1000) | \
        predictions.arrays(pred[:10], target[:10], "sha256:def", 200, "imagenet_a")
    assert {k: v.dtype.str for k, v in entries.items()} == {
        "pred": "<i2", "target": "<i2", "fingerprint": "<U10", "pred__imagenet_a": "<i2",
        "target__imagenet_a": "<i2", "fingerprint__imagenet_a": "<U10"}
    assert entries["fingerprint"].shape == ()
    assert [predictions.int_dtype(n).name for n in (2, 128, 129, 1000, 40000)] == \
        ["int8", "int8", "int16", "int16", "int32"]
    import io

    for labels, bound in ((target, 100_000), (rng.permutation(target), 400_000)):  # class-folder order, shuffled
        guess = np.where(rng.random(len(labels)) < 0.8, labels, rng.integers(0, 1000, len(labels)))
        buf = io.BytesIO()
        np.savez_compressed(buf, **predictions.arrays(guess, labels, "sha256:abc", 1000))
        assert buf.tell() < bound  # measured: 0.60 bytes per image in folder order, 3.05 shuffled
    with pytest.raises(ValueError, match="must be equal 1-D"):
        predictions.arrays(pred, target[:5], "sha256:abc", 1000)


def test_robustness_targets_write_their_predictions(tmp_path):
    """ImageNet-A (200 classes, masked logits), -R and -C targets: the predictions the scores used."""
    from fixtures_data import class_folders_tree, config as data_config
    from test_datasets_check import MEAN, STD, TenchThenStingray

    class_folders_tree(tmp_path / "imagenet-a", ["n01498041", "n01531178"], {".": 2})
    class_folders_tree(tmp_path / "imagenet-r", ["n01443537", "n01484850", "n01498041"], {".": 1})
    for c in R.STANDARD:
        for s in R.SEVERITIES:
            class_folders_tree(tmp_path / "imagenet-c" / c / str(s), ["n01498041"] + (["n01440764"] if s >= 4 else []),
                               {".": 1})
    cfg = data_config("imagenet/imagenet", tmp_path, image_size=8, splits={"imagenet_a": 4, "imagenet_r": 3},
                      num_workers=0)
    got: dict = {}
    out = evaluate_robustness(TenchThenStingray(), cfg, MEAN, STD, torch.device("cpu"), batch_size=3, progress=False,
                              predictions=got)
    assert len(got) == 2 + len(R.STANDARD) * len(R.SEVERITIES)
    a = got["imagenet_a"]
    stingray = R.subset_classes("imagenet_a")[0].index("n01498041")  # tench is masked out: stingray wins
    assert a["pred"].tolist() == [stingray] * 4 and a["num_classes"] == 200 and a["bad_images"] == 0
    assert out["imagenet_a_top1"] == 100 * np.mean(a["pred"] == a["target"])
    r = got["imagenet_r"]
    assert out["imagenet_r_top1"] == pytest.approx(100 * np.mean(r["pred"] == r["target"]))
    fog = got[R.corruption_target("fog", 4)]
    assert fog["pred"].tolist() == [0, 0] and fog["target"].tolist() == [0, 6]  # 1000-way: tench, then stingray
    assert out["imagenet_c_top1"]["fog"][4] == 100 * np.mean(fog["pred"] == fog["target"])
    from bench.data.fingerprint import fingerprint

    # identifiers relative to the target's own folder: moving the data keeps the fingerprint
    ids = [f"{w}/{p.name}" for w in ("n01498041", "n01531178") for p in sorted((tmp_path / "imagenet-a" / w).iterdir())]
    assert a["fingerprint"] == fingerprint(ids, a["target"])
    folder = tmp_path / "run"
    fields = bench.run.runner.save_predictions(folder, (np.array([1, 2]), np.array([1, 1])), {"fingerprint": "sha256:t"}, 8,
                                        0, got)
    assert fields["predictions_complete"] is True and fields["predictions_images"] == 2
    back = predictions.load(folder)
    assert set(back) == {"test", *got} and back["imagenet_a"]["fingerprint"] == a["fingerprint"]
    assert np.array_equal(back["imagenet_a"]["pred"], a["pred"]) and back["test"]["fingerprint"] == "sha256:t"
    with zipfile.ZipFile(folder / records.PREDICTIONS) as z:
        assert "pred__imagenet_c_fog_4.npy" in z.namelist()


def test_a_skipped_image_marks_the_predictions_incomplete(tmp_path):
    got = {"imagenet_v2": {"pred": np.zeros(3), "target": np.zeros(3), "fingerprint": "sha256:v", "num_classes": 1000,
                           "bad_images": 1}}
    fields = bench.run.runner.save_predictions(tmp_path, (np.zeros(4), np.zeros(4)), {"fingerprint": "sha256:t"}, 8, 0, got)
    assert fields["predictions_complete"] is False and fields["predictions_bad_images"] == {"imagenet_v2": 1}
    fields = bench.run.runner.save_predictions(tmp_path, (np.zeros(4), np.zeros(4)), {"fingerprint": "sha256:t"}, 8, 2, {})
    assert fields["predictions_complete"] is False and fields["predictions_bad_images"] == {"test": 2}


def test_an_unsupported_run_writes_no_predictions(tmp_path):
    cfg = dataclasses.replace(config(tmp_path, "vpt"), backbone=backbone_config("tiny_convnext"))
    rec = run(cfg)
    assert rec["status"] == "unsupported" and "predictions" not in rec  # VPT needs tokens: not on a CNN
    assert not list(tmp_path.rglob(records.PREDICTIONS)) and list(tmp_path.rglob(records.RECORD))
