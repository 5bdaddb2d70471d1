"""VTAB-1k from TFDS without TFDS: the 19 tasks' slices against a table written out from task_adaptation's
data/*.py (commit d7630d3), the label check and the version hold of `prepare tfds`, through stand-in readers."""
import json

import numpy as np
import pytest

from bench.data import prepare, vtab_tfds
from bench.data.vtab_tfds import TASKS, slices, version_matches

# TFDS split sizes of the versions held (the TFDS catalog); clevr's test split has no scenes
SIZES = {
    "caltech101": {"train": 3060, "test": 6084},
    "cifar100": {"train": 50000, "test": 10000},
    "clevr": {"train": 70000, "validation": 15000, "test": 15000},
    "dtd": {"train": 1880, "validation": 1880, "test": 1880},
    "oxford_flowers102": {"train": 1020, "validation": 1020, "test": 6149},
    "oxford_iiit_pet": {"train": 3680, "test": 3669},
    "patch_camelyon": {"train": 262144, "validation": 32768, "test": 32768},
    "sun397/tfds": {"train": 76128, "validation": 10875, "test": 21750},
    "svhn_cropped": {"train": 73257, "test": 26032, "extra": 531131},
    "resisc45": {"train": 31500},
    "eurosat/rgb": {"train": 27000},
    "dmlab": {"train": 65550, "validation": 22628, "test": 22735},
    "kitti": {"train": 6347, "validation": 423, "test": 711},
    "smallnorb": {"train": 24300, "test": 24300},
    "dsprites": {"train": 737280},
    "diabetic_retinopathy_detection/btgraham-300": {"train": 35126, "validation": 10906, "test": 42670},
}
# task_adaptation's tfds_splits["train800"], ["val200"], ["test"] at those sizes, in its own split syntax
# (train800val200 is always train800 + val200 there, and is so here by construction of the txt files)
TASK_ADAPTATION = {
    "caltech101": ("train[:800]", "train[2754:2954]", "test"),  # 90 % of 3060 = 2754
    "cifar": ("train[:800]", "train[45000:45200]", "test"),
    "dtd": ("train[:800]", "validation[:200]", "test"),
    "oxford_flowers102": ("train[:800]", "validation[:200]", "test"),
    "oxford_iiit_pet": ("train[:800]", "train[2944:3144]", "test"),  # 80 % of 3680
    "patch_camelyon": ("train[:800]", "validation[:200]", "test"),
    "sun397": ("train[:800]", "validation[:200]", "test"),
    "svhn": ("train[:800]", "train[65931:66131]", "test"),  # 90 % of 73257, rounded down
    "resisc45": ("train[:800]", "train[18900:19100]", "train[25200:]"),  # 60 / 20 / 20
    "eurosat": ("train[:800]", "train[16200:16400]", "train[21600:]"),
    "dmlab": ("train[:800]", "validation[:200]", "test"),
    "kitti": ("train[:800]", "validation[:200]", "test"),
    "smallnorb_azi": ("train[:800]", "test[:200]", "test[50%:]"),
    "smallnorb_ele": ("train[:800]", "test[:200]", "test[50%:]"),
    "dsprites_loc": ("train[:800]", "train[589824:590024]", "train[663552:]"),  # 80 / 10 / 10
    "dsprites_ori": ("train[:800]", "train[589824:590024]", "train[663552:]"),
    "clevr_dist": ("train[:800]", "train[63000:63200]", "validation"),  # VTAB's test: TFDS validation
    "clevr_count": ("train[:800]", "train[63000:63200]", "validation"),
    "diabetic_retinopathy": ("train[:800]", "validation[:200]", "test"),
}
# the versions task_adaptation asks for (tfds.builder("<name>:<version>")); kitti: 3.1.0 there, held at 3.2.0
VERSIONS = {"caltech101": "3.*.*", "cifar": "3.*.*", "dtd": "3.*.*", "oxford_flowers102": "2.*.*",
            "oxford_iiit_pet": "3.*.*", "patch_camelyon": "2.*.*", "sun397": "4.*.*", "svhn": "3.*.*",
            "resisc45": "3.*.*", "eurosat": "2.*.*", "dmlab": "2.0.1", "kitti": "3.2.0", "smallnorb_azi": "2.*.*",
            "smallnorb_ele": "2.*.*", "dsprites_loc": "2.*.*", "dsprites_ori": "2.*.*", "clevr_dist": "3.*.*",
            "clevr_count": "3.*.*", "diabetic_retinopathy": "3.*.*"}


def ranges(spec: str, counts: dict[str, int]) -> tuple[str, int, int]:
    """task_adaptation's `split[a:b]`, `split[p%:]` or `split` as (split, start, stop)."""
    split, _, rest = spec.partition("[")
    n = counts[split]
    if not rest:
        return split, 0, n
    a, b = rest.rstrip("]").split(":")
    if a.endswith("%"):
        a = round(int(a[:-1]) * n / 100)  # TFDS rounds a percent boundary to the closest index
    return split, int(a or 0), int(b) if b else n


@pytest.mark.parametrize("name", list(TASK_ADAPTATION))
def test_slices_match_task_adaptation(name):
    task = TASKS[name]
    counts = SIZES[task.builder]
    want = {ours: [ranges(spec, counts)] for ours, spec in zip(("train800", "val200", "test"),
                                                                 TASK_ADAPTATION[name], strict=True)}
    assert slices(task, counts) == want
    assert task.version == VERSIONS[name]
    assert all(b - a == n for (_, a, b), n in zip((want["train800"][0], want["val200"][0]), (800, 200), strict=True))


def test_every_task_is_in_the_table():
    assert set(TASKS) == set(TASK_ADAPTATION) == set(VERSIONS) and len(TASKS) == 19


def test_version_matches():
    assert version_matches("3.1.0", "3.*.*") and version_matches("2.0.1", "2.0.1")
    assert not version_matches("4.0.0", "3.*.*") and not version_matches("3.1.0", "3.2.0")
    assert not version_matches("3.1", "3.*.*")


# --- prepare through stand-in readers ---------------------------------------------------------
class Reader:
    """TfdsReader's three methods over generated examples: label `label_of(split, i)`, a 4x4 image."""

    def __init__(self, counts, version, label_of):
        self.counts_, self.version_, self.label_of, self.asked = counts, version, label_of, []

    def version(self, name, wanted=()):
        self.asked.append(wanted)
        return self.version_

    def counts(self, name):
        return dict(self.counts_)

    def read(self, name, split, start, stop):
        for i in range(start, stop):
            yield {"image": np.full((4, 4, 3), i % 256, np.uint8), "label": self.label_of(split, i)}


CIFAR = {"train": 3000, "test": 300}  # 90 % = 2700: val200 = train[2700:2900], test = test[0:300]


def test_out_of_range_label_stops_with_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    """cifar (100 classes): a label function giving 100 at TFDS test[123] stops the task before any image is
    written; the line names the split, the index and the value."""
    reader = Reader(CIFAR, "3.0.2", lambda split, i: 100 if (split, i) == ("test", 123) else i % 100)
    monkeypatch.setattr(vtab_tfds, "TfdsReader", lambda d: reader)
    code = prepare.main(["tfds", "vtab/cifar", "--data-root", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert err == ("error: vtab/cifar: test label at TFDS cifar100 test[123] is 100, not in 0..99; "
                   "nothing was written for the task\n")
    assert not (tmp_path / "vtab-1k" / "cifar").exists() and not list((tmp_path / "vtab-1k").glob(".*"))


def test_failing_label_function_stops_naming_the_error(tmp_path):
    """A label function that raises on an example (clevr_dist on a scene without objects) stops as one too."""
    class NoScene:  # int() fails, as clevr_dist's minimum over no objects does
        def __int__(self):
            raise ValueError("zero-size array")

    def label(split, i):
        return NoScene() if i == 7 else 0

    reader = Reader(CIFAR, "3.0.2", label)
    with pytest.raises(prepare.PrepareError, match=r"train800 label at TFDS cifar100 train\[7\] is ValueError: zero"):
        prepare.run_task("vtab/cifar", tmp_path, False, prepare.tfds_writer("vtab/cifar", reader))
    assert not (tmp_path / "vtab-1k" / "cifar").exists()


def test_other_major_version_stops_and_allow_version_prepares_it(tmp_path, monkeypatch, capsys):
    reader = Reader(CIFAR, "4.0.0", lambda split, i: i % 100)
    monkeypatch.setattr(vtab_tfds, "TfdsReader", lambda d: reader)
    assert prepare.main(["tfds", "vtab/cifar", "--data-root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err == ("error: vtab/cifar: TFDS cifar100 is version 4.0.0, the task holds 3.*.* (docs/datasets.md); "
                   "--allow-version cifar100:4.0.0 prepares it anyway\n")
    assert not (tmp_path / "vtab-1k" / "cifar").exists() and reader.asked == [("3.*.*",)]

    assert prepare.main(["tfds", "vtab/cifar", "--data-root", str(tmp_path), "--allow-version", "cifar100:4.0.0"]) == 0
    out = capsys.readouterr().out
    assert "note: TFDS cifar100 is version 4.0.0, not 3.*.*: --allow-version names it" in out
    assert reader.asked[-1] == ("3.*.*", "4.0.0")  # the held version first, then the allowed one
    m = json.loads((tmp_path / "vtab-1k" / "cifar" / "manifest.json").read_text())
    assert m["source"]["version"] == "4.0.0" and m["source"]["version_held"] == "3.*.*" and len(m["notes"]) == 1
    assert m["counts"] == {"train": 800, "val": 200, "trainval": 1000, "test": 300}


@pytest.mark.parametrize("bad", ["cifar:4.0.0", "cifar100:4", "cifar100"])
def test_bad_allow_version_is_one_line(tmp_path, capsys, bad):
    assert prepare.main(["tfds", "vtab/cifar", "--data-root", str(tmp_path), "--allow-version", bad]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: --allow-version {bad!r}: expected BUILDER:X.Y.Z")
    assert "cifar100" in err and "kitti" in err


def test_docs_table_matches_the_tasks():
    """docs/datasets.md's TFDS table names each task's builder, held version and slices as vtab_tfds builds them."""
    from pathlib import Path

    text = (Path(__file__).parents[1] / "docs" / "datasets.md").read_text()
    rows = {}
    for line in text.split("## VTAB-1k from TFDS, task by task", 1)[1].splitlines():
        cells = [c.strip().replace("**", "").replace("\\*", "*").strip("`") for c in line.strip("|").split("|")]
        if len(cells) == 7 and cells[0] in TASKS:
            rows[cells[0]] = cells
    assert set(rows) == set(TASKS)
    for name, (_, builder, version, train, val, test, label) in rows.items():
        t = TASKS[name]
        p, q = t.train_percent, t.val_percent
        want = {"percent": (f"train[{p}%:+200]", "test"), "clevr": (f"train[{p}%:+200]", "validation"),
                "validation": ("validation[:200]", "test"), "smallnorb": ("test[:200]", "test[50%:]"),
                "three_way": (f"train[{p}%:+200]", f"train[{p + q}%:]")}[t.kind]
        assert (builder, version.split(" ")[0], train, val, test) == (t.builder, t.version, "train[:800]", *want), name


def test_undecodable_example_stops_with_one_line(tmp_path):
    """An example the reader cannot decode (decode_jpeg_as_tf's ValueError) stops the task before writing."""
    reader = Reader(CIFAR, "3.0.2", lambda split, i: 0)
    good = reader.read

    def read(name, split, start, stop):
        for ex in good(name, split, start, stop):
            if split == "train" and ex["image"][0, 0, 0] == 5:
                vtab_tfds.decode_jpeg_as_tf(b"\xff\xd8 not a JPEG", 3)
            yield ex

    reader.read = read
    with pytest.raises(prepare.PrepareError) as e:
        prepare.run_task("vtab/cifar", tmp_path, False, prepare.tfds_writer("vtab/cifar", reader))
    assert str(e.value).startswith("vtab/cifar: TFDS cifar100 train[5] cannot be read (a JPEG that cannot be "
                                   "decoded as TensorFlow does (")
    assert str(e.value).endswith("); nothing was written for the task") and "\n" not in str(e.value)
    assert not (tmp_path / "vtab-1k" / "cifar").exists()


def test_decode_jpeg_as_tf_reads_rgb_gray_and_adobe_cmyk():
    """Shapes and closeness to the source (the bit-exact comparison with TensorFlow is scripts/measure_jpeg_decode.py,
    outside CI); Adobe CMYK through TensorFlow's integer conversion."""
    import io

    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:24, 0:40]
    src = np.stack([x * 6, y * 10, (x + y) * 4], -1).astype(np.uint8) + rng.integers(0, 8, (24, 40, 3), np.uint8)
    for mode, channels in (("RGB", 3), ("L", 3), ("CMYK", 3), ("L", 1)):
        buf = io.BytesIO()
        Image.fromarray(src).convert(mode).save(buf, format="JPEG", quality=95)
        px = vtab_tfds.decode_jpeg_as_tf(buf.getvalue(), channels)
        want = np.asarray(Image.fromarray(src).convert(mode if mode == "L" else "RGB"))
        want = want.reshape(24, 40, -1).repeat(channels // want.reshape(24, 40, -1).shape[2], axis=2)
        assert px.shape == (24, 40, channels) and px.dtype == np.uint8
        diff = np.abs(px.astype(int) - want)
        assert diff.max() <= 16 and diff.mean() < 3, mode  # quality 95, chroma at 4:2:0
