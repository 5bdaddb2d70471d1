"""`python -m bench.data prepare tfds` through the real TFDS (`TfdsReader`, `as_data_source`) under TFDS's own
`tfds.testing.mock_data`, which generates small examples with each builder's real features and version.

The mock gives every split `num_examples` examples and example i the same content in every split (its seed is
the index), so these tests check which TFDS split each of our splits was read from through a spy on the real
reader's calls, and which examples through the labels and pixels the loaders read back. The expected ranges are
written out here from task_adaptation's definitions, not taken from `vtab_tfds.slices`.

CI installs tensorflow-datasets (the `test` extra); with CI=true a missing TFDS fails these tests, elsewhere they
skip with a message.
"""
import dataclasses
import io
import json
import os
import sys
import warnings

import numpy as np
import pytest
from PIL import Image

from bench.data import prepare, vtab_tfds
from bench.data.roots import dataset_root
from bench.data.splits import listing
from bench.data.vtab_tfds import TASKS
from conftest import run_cli

try:
    import tensorflow_datasets as tfds
except ImportError as e:  # checked per test below: fail in CI, skip elsewhere
    tfds, TFDS_MISSING = None, f"tensorflow-datasets is not installed (pip install -e '.[tfds]'): {e}"


@pytest.fixture(autouse=True)
def need_tfds():
    if tfds is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {TFDS_MISSING}")
        pytest.skip(TFDS_MISSING)


class SpyReader(vtab_tfds.TfdsReader):
    """The real reader, recording each (builder, TFDS split, start, stop) it is asked for."""

    def __init__(self, data_dir):
        super().__init__(data_dir)
        self.calls = []

    def read(self, name, split, start, stop):
        self.calls.append((name, split, start, stop))
        yield from super().read(name, split, start, stop)


def mock_examples(builder: str, split: str, start: int, stop: int, num_examples: int, data_dir) -> list[dict]:
    """The mock's examples split[start:stop], read straight from TFDS (not through our reader)."""
    with tfds.testing.mock_data(num_examples=num_examples):
        source = tfds.builder(builder, data_dir=str(data_dir)).as_data_source(split)
        return [source[i] for i in range(start, stop)]


def label(ex) -> int:
    return int(ex["label"])


def rgb(ex) -> np.ndarray:
    return ex["image"]


def gray(ex) -> np.ndarray:
    return np.concatenate([ex["image"]] * 3, axis=-1)


def check_task(root, name, num_examples, ranges, data_dir, label=label, image=rgb):
    """The prepared task reads back through the loaders as the TFDS ranges `ranges` ({our split: (split, a, b)})
    with `label` and `image` (written here from task_adaptation, not vtab_tfds's) applied, in that order; returns
    the manifest."""
    task = TASKS[name.removeprefix("vtab/")]
    cfg = prepare.dataset_config(name, root)
    want = {ours: mock_examples(task.builder, *r, num_examples, data_dir) for ours, r in ranges.items()}
    for split, ours in (("train", "train800"), ("val", "val200"), ("test", "test")):
        lst = listing(cfg, split)
        assert len(lst) == len(want[ours])
        assert lst.labels.tolist() == [label(ex) for ex in want[ours]]
        for i in (0, len(lst) // 2, len(lst) - 1):  # PNG is lossless: the expected pixels exactly
            px = np.asarray(Image.open(lst.paths[i]).convert("RGB"))
            assert px.dtype == np.uint8 and np.array_equal(px, image(want[ours][i]))
    tv = listing(cfg, "trainval")
    assert tv.labels.tolist() == [label(ex) for ex in want["train800"] + want["val200"]]
    assert len(set(tv.labels.tolist())) > 1  # the mock's random labels: the comparison is not vacuous
    m = json.loads((dataset_root(cfg) / "manifest.json").read_text())
    counts = {s: len(want[o]) for s, o in (("train", "train800"), ("val", "val200"), ("test", "test"))}
    assert m["counts"] == {**counts, "trainval": counts["train"] + counts["val"]}
    assert m["source"]["kind"] == "tfds" and m["source"]["builder"] == task.builder and m["pixel_format"] == "png"
    assert m["source"]["version"] == str(tfds.builder(task.builder, data_dir=str(data_dir)).version)
    assert m["source"]["slices"] == {o: [f"{s}[{a}:{b}]"] for o, (s, a, b) in ranges.items()}
    return m


@pytest.fixture
def small(monkeypatch):
    """VTAB-1k's 800 / 200 scaled to 80 / 20, so that a task needs ten times fewer mock examples (the CLI test
    prepares one task at the real sizes)."""
    monkeypatch.setattr(vtab_tfds, "TRAIN_SIZE", 80)
    monkeypatch.setattr(vtab_tfds, "VAL_SIZE", 20)


# eurosat: 60 % train / 20 % val / the rest test, all of TFDS train (1000 -> val [600, 800), test [800, 1000))
EUROSAT = {"train800": ("train", 0, 800), "val200": ("train", 600, 800), "test": ("train", 800, 1000)}
CLI = """
import runpy, sys
import tensorflow_datasets as tfds
sys.argv = ["python -m bench.data", *sys.argv[1:]]
with tfds.testing.mock_data(num_examples={n}):
    try:
        runpy.run_module("bench.data", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as e:
        code = e.code
print("tensorflow imported:", "tensorflow" in sys.modules)
sys.exit(code)
"""


@pytest.mark.process
def test_cli_prepares_eurosat_at_vtab_sizes_from_mock_tfds_without_tensorflow(tmp_path):
    """`python -m bench.data prepare tfds` run as a module (runpy, inside TFDS's mock) in a fresh interpreter, at
    VTAB-1k's real 800 / 200; eurosat's test comes from TFDS train's tail."""
    out, tfds_dir = tmp_path / "data", tmp_path / "tfds"
    proc = run_cli("-c", CLI.format(n=1000), "prepare", "tfds", "vtab/eurosat", "--data-root", str(out),
                   "--tfds-dir", str(tfds_dir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "done  vtab/eurosat: train 800, val 200, trainval 1000, test 200, png" in proc.stdout
    assert "tensorflow imported: False" in proc.stdout  # array_record through as_data_source: no TensorFlow
    assert "note" not in proc.stdout  # eurosat/rgb is 2.0.0 in the tested TFDS, the 2.*.* task_adaptation asks for
    m = check_task(out, "vtab/eurosat", 1000, EUROSAT, tfds_dir)
    assert m["source"]["version"] == "2.0.0" and m["source"]["version_held"] == "2.*.*" and not m["notes"]


def test_svhn_90_percent_boundary_labels_read_before_images(tmp_path, small):
    """svhn: val starts at 90 % of TFDS train, test is TFDS test; every range is read twice, for the labels (all
    checked before an image is written) and then for the images; svhn_cropped 3.1.0 is a 3.*.*: no note."""
    reader = SpyReader(str(tmp_path / "tfds"))
    with tfds.testing.mock_data(num_examples=200), warnings.catch_warnings():
        warnings.simplefilter("error")
        line = prepare.run_task("vtab/svhn", tmp_path / "data", False, prepare.tfds_writer("vtab/svhn", reader))
    assert line.startswith("done  vtab/svhn: train 80, val 20, trainval 100, test 200, png") and "note" not in line
    ranges = {"train800": ("train", 0, 80), "val200": ("train", 180, 200), "test": ("test", 0, 200)}
    assert reader.calls == [("svhn_cropped", *r) for r in ranges.values()] * 2
    m = check_task(tmp_path / "data", "vtab/svhn", 200, ranges, tmp_path / "tfds")
    assert m["source"]["version"] == "3.1.0" and m["source"]["version_held"] == "3.*.*" and not m["notes"]

    again = SpyReader(str(tmp_path / "tfds"))  # prepared and verified: not read again
    with tfds.testing.mock_data(num_examples=200):
        assert "already prepared" in prepare.run_task("vtab/svhn", tmp_path / "data", False,
                                                      prepare.tfds_writer("vtab/svhn", again))
    assert again.calls == []


@pytest.mark.parametrize("name, n, ranges, label_name, label, image", [
    # smallnorb: label_elevation, gray tiled to RGB; val = TFDS test[:20], test = TFDS test[50%:]
    ("vtab/smallnorb_ele", 80, {"train800": ("train", 0, 80), "val200": ("test", 0, 20), "test": ("test", 40, 80)},
     "label_elevation", lambda ex: int(ex["label_elevation"]), gray),
    # dsprites: x position (32 values) in 16 bins, the 0/1 pixels times 255 in uint8 (the mock's 0..255 wrap
    # around as TensorFlow's uint8 multiply would); 80 % train / 10 % val / 10 % test of TFDS train
    ("vtab/dsprites_loc", 100, {"train800": ("train", 0, 80), "val200": ("train", 80, 100),
                                "test": ("train", 90, 100)}, "label_x_position_in_16_bins",
     lambda ex: int(ex["label_x_position"]) // 2, lambda ex: (gray(ex).astype(np.int64) * 255 % 256).astype(np.uint8)),
])
def test_label_function_tasks(tmp_path, small, name, n, ranges, label_name, label, image):
    task = TASKS[name.removeprefix("vtab/")]
    reader = SpyReader(str(tmp_path / "tfds"))
    with tfds.testing.mock_data(num_examples=n):
        line = prepare.run_task(name, tmp_path / "data", False, prepare.tfds_writer(name, reader))
    test = ranges["test"][2] - ranges["test"][1]
    assert line.startswith(f"done  {name}: train 80, val 20, trainval 100, test {test}, png") and "note" not in line
    assert reader.calls == [(task.builder, *r) for r in ranges.values()] * 2  # labels, then images
    m = check_task(tmp_path / "data", name, n, ranges, tmp_path / "tfds", label, image)
    assert m["source"]["label"] == label_name and m["source"]["version"] == "2.0.0" and not m["notes"]


def test_too_few_tfds_examples_is_one_line(tmp_path, monkeypatch, capsys):
    """A TFDS split smaller than a slice needs: one line naming the builder, split, size and range; nothing left."""
    reader = vtab_tfds.TfdsReader(str(tmp_path / "tfds"))
    monkeypatch.setattr(vtab_tfds, "TfdsReader", lambda d: reader)
    with tfds.testing.mock_data(num_examples=900):
        code = prepare.main(["tfds", "vtab/svhn", "--data-root", str(tmp_path / "data")])  # 90 % of 900 + 200 > 900
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("error: vtab/svhn: TFDS svhn_cropped split 'train' has 900 examples, val200 needs [810:1010]")
    assert not (tmp_path / "data" / "vtab-1k" / "svhn").exists()


# --- CLEVR: VTAB's test is TFDS validation ----------------------------------------------------
def scene(i: int) -> dict:
    """Example i's objects: 3 + i % 8 of them, the nearest at depth 7.75 + (i % 6) / 2 (each count and distance bin)."""
    n = 3 + i % 8
    z = 7.75 + (i % 6) / 2 + np.arange(n, dtype=np.float32)
    coords = np.stack([np.zeros(n), np.zeros(n), z], -1).astype(np.float32)
    return {"size": np.zeros(n, np.int64), "pixel_coords": coords}


class ClevrReader(SpyReader):
    """The real reader under the mock, with the objects TFDS's clevr builder writes: a scene for `train` and
    `validation`, none for `test` (its scenes file is not public)."""

    def read(self, name, split, start, stop):
        for i, ex in enumerate(super().read(name, split, start, stop), start):
            empty = {"size": np.zeros(0, np.int64), "pixel_coords": np.zeros((0, 3), np.float32)}
            yield {**ex, "objects": empty if split == "test" else scene(i)}


@pytest.mark.parametrize("name, label", [
    ("vtab/clevr_count", lambda i: i % 8),  # count_all: 3 + i % 8 objects - 3, 8 classes
    ("vtab/clevr_dist", lambda i: i % 6),  # nearest at 7.75, 8.25, ..., 10.25: bins (0, 8], (8, 8.5], ..., (10, 100]
])
def test_clevr_test_split_is_tfds_validation(tmp_path, small, name, label):
    """clevr_count and clevr_dist: val200 = train[90 %:+20], test = all of TFDS validation; the TFDS test split's
    empty scenes (labels -3, or no minimum at all) are never read, and every label is in range."""
    reader = ClevrReader(str(tmp_path / "tfds"))
    with tfds.testing.mock_data(num_examples=200):
        line = prepare.run_task(name, tmp_path / "data", False, prepare.tfds_writer(name, reader))
    assert line.startswith(f"done  {name}: train 80, val 20, trainval 100, test 200, png") and "note" not in line
    ranges = {"train800": ("train", 0, 80), "val200": ("train", 180, 200), "test": ("validation", 0, 200)}
    assert reader.calls == [("clevr", *r) for r in ranges.values()] * 2 and all(c[1] != "test" for c in reader.calls)
    cfg = prepare.dataset_config(name, tmp_path / "data")
    for split, (_, a, b) in zip(("train", "val", "test"), ranges.values(), strict=True):
        assert listing(cfg, split).labels.tolist() == [label(i) for i in range(a, b)]
    assert set(listing(cfg, "test").labels.tolist()) == set(range(cfg.num_classes))  # every class, none outside
    m = json.loads((dataset_root(cfg) / "manifest.json").read_text())
    assert m["source"]["slices"]["test"] == ["validation[0:200]"] and m["source"]["version_held"] == "3.*.*"


def test_clevr_from_tfds_test_would_stop_on_its_empty_scenes(tmp_path, small, monkeypatch):
    """What the `percent` kind did (test = TFDS test): the label check stops it before anything is written."""
    monkeypatch.setitem(TASKS, "clevr_count", dataclasses.replace(TASKS["clevr_count"], kind="percent"))
    with tfds.testing.mock_data(num_examples=200), pytest.raises(prepare.PrepareError) as e:
        prepare.run_task("vtab/clevr_count", tmp_path / "data", False,
                         prepare.tfds_writer("vtab/clevr_count", ClevrReader(str(tmp_path / "tfds"))))
    assert str(e.value) == ("vtab/clevr_count: test label at TFDS clevr test[0] is -3, not in 0..7; "
                            "nothing was written for the task")
    assert not (tmp_path / "data" / "vtab-1k" / "clevr_count").exists()


# --- versions: oxford_iiit_pet is 4.0.0 in TFDS 4.9, task_adaptation asks for 3.*.* ----------
def test_pets_at_another_major_version_stops_unless_allowed(tmp_path, small, capsys):
    tfds_dir = str(tmp_path / "tfds")
    reader = vtab_tfds.TfdsReader(tfds_dir)
    with tfds.testing.mock_data(num_examples=120):
        with pytest.raises(prepare.PrepareError) as e:
            prepare.run_task("vtab/oxford_iiit_pet", tmp_path / "data", False,
                             prepare.tfds_writer("vtab/oxford_iiit_pet", reader))
        assert str(e.value) == ("vtab/oxford_iiit_pet: TFDS oxford_iiit_pet is version 4.0.0, the task holds 3.*.* "
                                "(docs/datasets.md); --allow-version oxford_iiit_pet:4.0.0 prepares it anyway")
        assert not (tmp_path / "data" / "vtab-1k" / "oxford_iiit_pet").exists()
        line = prepare.run_task("vtab/oxford_iiit_pet", tmp_path / "data", False, prepare.tfds_writer(
            "vtab/oxford_iiit_pet", vtab_tfds.TfdsReader(tfds_dir), ("oxford_iiit_pet:4.0.0",)))
    assert line.startswith("done  vtab/oxford_iiit_pet: train 80, val 20, trainval 100, test 120, png")
    assert "note: TFDS oxford_iiit_pet is version 4.0.0, not 3.*.*: --allow-version names it" in line
    ranges = {"train800": ("train", 0, 80), "val200": ("train", 96, 116), "test": ("test", 0, 120)}  # 80 % of 120
    m = check_task(tmp_path / "data", "vtab/oxford_iiit_pet", 120, ranges, tfds_dir)
    assert m["source"]["version"] == "4.0.0" and m["source"]["version_held"] == "3.*.*" and len(m["notes"]) == 1


# --- JPEG decoded as TensorFlow decodes it, from a real array_record data dir ----------------
def jpeg_dtd_builder(data_dir, rng):
    """A real TFDS data dir `dtd/3.0.1` written by a builder of our own (no mock, no TensorFlow): JPEG bytes as
    TFDS's dtd stores the original files, of random sizes, qualities and subsamplings."""

    class Dtd(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        name = "dtd"
        VERSION = tfds.core.Version("3.0.1")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
                "label": tfds.features.ClassLabel(num_classes=47)}))

        def _split_generators(self, dl_manager):
            return {s: self._generate_examples(s, n) for s, n in (("train", 90), ("validation", 25), ("test", 30))}

        def _generate_examples(self, split, n):
            for i in range(n):
                h, w = rng.integers(16, 48, 2)
                px = np.clip(rng.normal(128, 60, (h, w, 3)), 0, 255).astype(np.uint8)
                buf = io.BytesIO()
                Image.fromarray(px).save(buf, format="JPEG", quality=int(rng.choice([50, 75, 95])),
                                         subsampling=int(rng.integers(0, 3)))
                yield f"{split}{i}", {"image": buf.getvalue(), "label": (i * 7) % 47}

    Dtd(data_dir=str(data_dir), file_format="array_record").download_and_prepare()


def test_jpeg_pixels_are_tensorflows_from_a_real_data_dir(tmp_path, small):
    """dtd from real array_record files: the PNGs hold decode_jpeg_as_tf's pixels of the stored bytes (TensorFlow's
    fast IDCT), not PIL's, which differ on most of these images; TensorFlow is never imported."""
    tfds_dir = tmp_path / "tfds"
    jpeg_dtd_builder(tfds_dir, np.random.default_rng(0))
    line = prepare.run_task("vtab/dtd", tmp_path / "data", False,
                            prepare.tfds_writer("vtab/dtd", vtab_tfds.TfdsReader(str(tfds_dir))))
    assert line.startswith("done  vtab/dtd: train 80, val 20, trainval 100, test 30, png") and "note" not in line
    raw = tfds.builder("dtd:3.0.1", data_dir=str(tfds_dir)).as_data_source(
        "test", decoders={"image": tfds.decode.SkipDecoding()})  # the stored bytes
    lst = listing(prepare.dataset_config("vtab/dtd", tmp_path / "data"), "test")
    differs = 0
    for i, path in enumerate(lst.paths):
        data = raw[i]["image"]
        px = np.asarray(Image.open(path).convert("RGB"))
        assert np.array_equal(px, vtab_tfds.decode_jpeg_as_tf(data, 3)) and lst.labels[i] == raw[i]["label"]
        differs += not np.array_equal(px, np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    assert differs > len(lst) // 2
    assert "tensorflow" not in sys.modules
