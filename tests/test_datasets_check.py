"""Bad input: `python -m bench.data check` and load_split find each defect and name the file and line;
robustness sets: the ImageNet-A/R class mapping and the mCE arithmetic against hand-computed values."""
import json

import numpy as np
import pytest
import torch

from bench.data import DataError, load_split
from bench.data import robustness as R
from bench.data.check import main as check
from bench.train import evaluate as E
from conftest import run_cli
from fixtures_data import VTAB_SPLITS, class_folders_tree, config, fgvc_json_tree, image, official_tree, vtab_tree

MEAN, STD = (0.5,) * 3, (0.5,) * 3
SPLITS_ARG = "splits={train: 6, val: 2, trainval: 8, test: 5}"


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    monkeypatch.delenv("BENCH_DATA_ROOT", raising=False)
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))


def run_check(capsys, *args) -> tuple[int, str]:
    code = check(list(args))
    return code, capsys.readouterr().out


@pytest.fixture
def vtab(tmp_path):
    return vtab_tree(tmp_path, "dtd", classes=3)


def edit_line(path, n, new):
    lines = path.read_text().splitlines()
    lines[n - 1] = new
    path.write_text("\n".join(lines) + "\n")


def test_check_passes_a_good_tree(tmp_path, vtab, capsys):
    code, out = run_check(capsys, "vtab/dtd", "--data-root", str(tmp_path), "--set", SPLITS_ARG)
    assert code == 0 and out.startswith("ok    vtab/dtd: train 6, val 2, trainval 8, test 5 (")
    assert out.count("\n") == 1  # one line per dataset


@pytest.mark.parametrize("defect, expected", [
    ("malformed", r"train800\.txt:3: malformed line 'images/train800/000002\.jpg'"),
    ("missing", r"test\.txt:4: image .*images/test/000003\.jpg not found"),
    ("unreadable", r"val200\.txt:2: image .*images/val200/000001\.jpg is unreadable"),
    ("label", r"test\.txt:2: label 7 out of range for 3 classes"),
    ("size", r"split 'train' \(.*train800\.txt\) has 5 images, expected 6"),
])
def test_each_defect_is_named_by_check_and_stops_loading(tmp_path, vtab, capsys, defect, expected):
    if defect == "malformed":
        edit_line(vtab / "train800.txt", 3, "images/train800/000002.jpg")
    elif defect == "missing":
        (vtab / "images/test/000003.jpg").unlink()
    elif defect == "unreadable":
        (vtab / "images/val200/000001.jpg").write_bytes(b"not an image at all")
    elif defect == "label":
        edit_line(vtab / "test.txt", 2, "images/test/000001.jpg 7")
    else:
        lines = (vtab / "train800.txt").read_text().splitlines()[:-1]
        (vtab / "train800.txt").write_text("\n".join(lines) + "\n")
    code, out = run_check(capsys, "vtab/dtd", "--data-root", str(tmp_path), "--set", SPLITS_ARG, "--set", "num_classes=3")
    assert code == 1 and out.startswith("FAIL  vtab/dtd: ")
    assert pytest.importorskip("re").search(expected, out), out
    split = {"malformed": "train", "missing": "test", "unreadable": "val", "label": "test", "size": "train"}[defect]
    cfg = config("vtab/dtd", tmp_path, splits=VTAB_SPLITS, image_size=8, num_classes=3)
    with pytest.raises(DataError, match=expected):
        load_split(cfg, split, MEAN, STD)  # raised before any Dataset exists: no training on a broken split


def test_missing_dataset_names_the_path_the_files_and_the_readme(tmp_path, capsys):
    cfg = config("vtab/svhn", tmp_path)
    with pytest.raises(DataError) as e:
        load_split(cfg, "trainval", MEAN, STD)
    msg = str(e.value)
    assert str(tmp_path / "vtab-1k" / "svhn") in msg and "train800val200.txt" in msg
    assert "Preparing the datasets" in msg and "BENCH_DATA_ROOT" in msg
    code, out = run_check(capsys, "vtab/svhn", "--data-root", str(tmp_path))
    assert code == 1 and "FAIL  vtab/svhn" in out and "Preparing the datasets" in out


def test_unknown_dataset_name_lists_the_valid_ones(capsys):
    assert check(["vtab/nope"]) == 2
    assert "vtab/dtd" in capsys.readouterr().err


def test_fgvc_json_and_official_defects(tmp_path, capsys):
    root = fgvc_json_tree(tmp_path / "fgvc" / "CUB_200_2011")
    (root / "val.json").write_text('{"val/img_0.jpg": 3,\n "val/img_1.jpg" 7}')
    cfg = config("fgvc/cub", tmp_path, num_classes=3)
    with pytest.raises(DataError, match=r"val\.json:2: not valid JSON"):
        load_split(cfg, "train", MEAN, STD)
    official_tree(tmp_path / "fgvc" / "nabirds", class_ids=[1, 2, 3, 4], n_train=4, n_test=4)
    code, out = run_check(capsys, "fgvc/nabirds", "--data-root", str(tmp_path), "--set", "format=nabirds",
                          "--set", "num_classes=3", "--set", "splits={}")
    assert code == 1 and "image_class_labels.txt uses 4 class ids, expected 3" in out
    official_tree(tmp_path / "fgvc" / "cub2", class_ids=[1, 2, 4], n_train=3, n_test=3)
    cub = config("fgvc/cub", tmp_path, format="cub", root="fgvc/cub2", num_classes=3, splits={})
    with pytest.raises(DataError, match=r"images\.txt:3 \(.*image_class_labels\.txt:3\): label 3 out of range"):
        load_split(cub, "trainval", MEAN, STD)


@pytest.mark.process
def test_cli_entry_point(tmp_path, vtab):
    proc = run_cli("-m", "bench.data", "check", "vtab/dtd", "--data-root", str(tmp_path), "--set", SPLITS_ARG,
                   "--no-decode", timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("ok    vtab/dtd"), proc.stderr


# --- robustness ----------------------------------------------------------------------------------
def test_imagenet_a_and_r_class_mapping_by_hand():
    a_wnids, a_idx = R.subset_classes("imagenet_a")
    r_wnids, r_idx = R.subset_classes("imagenet_r")
    assert len(a_wnids) == len(r_wnids) == 200 and list(a_idx) == sorted(a_idx)
    # ImageNet-1k indices are sorted WordNet ids: 0 tench n01440764, 1 goldfish n01443537, ...,
    # 6 stingray n01498041 (the first ImageNet-A class), 11 goldfinch n01531178 (the second).
    assert (a_wnids[0], int(a_idx[0]), a_wnids[1], int(a_idx[1])) == ("n01498041", 6, "n01531178", 11)
    assert (r_wnids[0], int(r_idx[0])) == ("n01443537", 1)  # goldfish, the first ImageNet-R class
    logits = np.zeros((2, 1000))
    logits[0, [0, 11, 6]] = [9.0, 5.0, 1.0]  # tench (not in A) is the 1000-way winner; among A's 200: goldfinch
    logits[1, [6, 11]] = [2.0, 1.0]
    assert R.masked_predictions(logits, a_idx).tolist() == [1, 0]


def test_mce_arithmetic_by_hand():
    # errors equal to AlexNet's at every severity: every CE is 100 %, so is the mCE
    same = {c: {s: 100 * R.ALEXNET_ERR[c] for s in R.SEVERITIES} for c in R.STANDARD}
    assert R.mce(same)[0] == pytest.approx(100.0)
    # brightness with errors 10..50 %: CE = (10+20+30+40+50) / (5 * 56.4592) = 150 / 282.296 = 53.1358 %
    assert R.corruption_error({1: 10, 2: 20, 3: 30, 4: 40, 5: 50}, "brightness") == pytest.approx(53.1358, abs=1e-4)
    # halving one corruption's errors lowers the mCE by 50 / 15 points; extra corruptions never count
    half = {**same, "fog": {s: 50 * R.ALEXNET_ERR["fog"] for s in R.SEVERITIES},
            "speckle_noise": {s: 99.0 for s in R.SEVERITIES}}
    mce, ce = R.mce(half)
    assert mce == pytest.approx(100 - 50 / 15) and ce["fog"] == pytest.approx(50.0) and "speckle_noise" not in ce
    with pytest.raises(ValueError, match="missing"):
        R.mce({c: v for c, v in same.items() if c != "fog"})


class TenchThenStingray(torch.nn.Module):
    """1000-way logits: tench (index 0, in neither A nor R) first, stingray (6) second, goldfish (1) third."""

    def forward(self, x):
        out = torch.zeros(len(x), 1000)
        out[:, 0], out[:, 6], out[:, 1] = 3.0, 2.0, 1.0
        return out


def test_robustness_evaluation_on_fixture_trees(tmp_path, capsys, monkeypatch):
    class_folders_tree(tmp_path / "imagenet-a", ["n01498041", "n01531178"], {".": 2})  # stingray, goldfinch
    class_folders_tree(tmp_path / "imagenet-r", ["n01443537", "n01484850", "n01498041"], {".": 1})  # R has stingray too
    for c in R.STANDARD:
        for s in R.SEVERITIES:
            # 1 stingray image everywhere, plus a tench image at severities 4 and 5: top-1 0, 0, 0, 50, 50 (1000-way)
            wnids = ["n01498041"] + (["n01440764"] if s >= 4 else [])
            class_folders_tree(tmp_path / "imagenet-c" / c / str(s), wnids, {".": 1})
    cfg = config("imagenet/imagenet", tmp_path, image_size=8, splits={"imagenet_a": 4, "imagenet_r": 3}, num_workers=0)
    loaders = []  # every DataLoader the evaluation opens: one per target, ImageNet-C's 75 folders being one

    class Counted(E.DataLoader):
        def __init__(self, data, *args, **kwargs):
            loaders.append(len(data))
            super().__init__(data, *args, **kwargs)

    monkeypatch.setattr(E, "DataLoader", Counted)
    out = E.evaluate_robustness(TenchThenStingray(), cfg, MEAN, STD, torch.device("cpu"), batch_size=4, progress=False)
    assert loaders == [4, 3, len(R.STANDARD) * (1 + 1 + 1 + 2 + 2)]  # A, R, then all of C at once
    assert out["imagenet_a_top1"] == 50.0 and out["imagenet_a_images"] == 4  # tench masked out: stingray
    assert out["imagenet_r_top1"] == pytest.approx(100 / 3)  # only the stingray image is right
    assert out["imagenet_c_top1"]["fog"] == {1: 0.0, 2: 0.0, 3: 0.0, 4: 50.0, 5: 50.0}
    # errors 100, 100, 100, 50, 50 per corruption: CE_c = 400 / (5 * 100 * alex_c) * 100 = 80 / alex_c
    assert out["imagenet_c_mce"] == pytest.approx(np.mean([80 / R.ALEXNET_ERR[c] for c in R.STANDARD]))
    json.dumps(out)  # fits in a record
    code, text = run_check(capsys, "robustness/*", "--data-root", str(tmp_path), "--set",
                           "splits={imagenet_a: 4, imagenet_r: 3}")
    assert code == 0 and text.count("ok    robustness/") == 3, text
    image(tmp_path / "imagenet-a" / "n99999999" / "x.jpg")
    code, text = run_check(capsys, "robustness/imagenet_a", "--data-root", str(tmp_path))
    assert code == 1 and "['n99999999'] are not among the 200" in text


# --- integrity: class counts, leaks, unusual images, pixel format ----------------------------------
def test_check_reports_a_planted_duplicate_an_odd_image_and_missing_classes(tmp_path, vtab, capsys):
    from PIL import Image

    (vtab / "images/test/000002.jpg").write_bytes((vtab / "images/train800/000004.jpg").read_bytes())  # a leak
    Image.open(vtab / "images/test/000001.jpg").convert("L").save(vtab / "images/test/000001.jpg")  # grayscale
    edit_line(vtab / "val200.txt", 2, "images/val200/000001.jpg 0")  # val now has classes {0} only
    report = tmp_path / "report.json"
    code, out = run_check(capsys, "vtab/dtd", "--data-root", str(tmp_path), "--set", SPLITS_ARG, "--set",
                          "num_classes=3", "--report", str(report), "-v")
    assert code == 0 and out.startswith("WARN  vtab/dtd: train 6, val 2, trainval 8, test 5 (")
    assert "; jpeg q75; " in out.splitlines()[0]  # PIL's default quality, estimated from the tables
    assert "1 test image(s) equal a training image pixel for pixel (a leak)" in out
    assert "1 image(s) not RGB 12x9" in out and "val lacks 2 of the 3 classes" in out
    rep = json.loads(report.read_text())["vtab/dtd"]
    assert rep["status"] == "warn" and rep["duplicates"]["count"] == 1
    assert rep["duplicates"]["examples"][0]["test"].endswith("images/test/000002.jpg")
    assert rep["duplicates"]["examples"][0]["train"].endswith("images/train800/000004.jpg")
    assert rep["odd_images"]["examples"] == [{"path": str(vtab / "images/test/000001.jpg"), "mode": "L",
                                              "size": [12, 9], "why": "mode"}]
    assert rep["splits"]["val"]["missing_classes"] == [1, 2]
    assert rep["splits"]["test"]["class_counts"] == {"0": 2, "1": 2, "2": 1}  # JSON keys
    assert rep["pixel_format"]["format"] == "jpeg" and rep["pixel_format"]["jpeg_quality"] == 75


def test_check_of_a_clean_tree_writes_an_ok_report(tmp_path, vtab, capsys):
    report = tmp_path / "r.json"
    code, out = run_check(capsys, "vtab/dtd", "--data-root", str(tmp_path), "--set", SPLITS_ARG, "--report", str(report))
    rep = json.loads(report.read_text())["vtab/dtd"]
    assert code == 0 and out.startswith("ok    ") and rep["status"] == "ok" and rep["duplicates"]["count"] == 0
    assert rep["classes_seen"] == 3 and rep["num_classes"] == 47 and rep["warnings"] == []
    assert rep["notes"] == ["val lacks 1 of the 3 classes the other splits have"]  # 2 images, 3 classes
