"""`python -m bench.data prepare`: each source on small generated data, read back through the loaders; VTAB's
slices and label functions on hand-made examples; atomic, resumable, locked tasks; copies already there kept
(refused, or moved aside); bad input as one line."""
import errno
import io
import json
import os
import shutil
import time

import numpy as np
import pytest
from PIL import Image

from bench.data import prepare, vtab_tfds
from bench.data.splits import listing, prepared_source
from bench.data.vtab_tfds import TASKS, clevr_count, clevr_dist, kitti_dist, slices
from conftest import run_cli


# --- task_adaptation's slices and labels ------------------------------------------------------
def test_vtab_slices_follow_task_adaptation():
    cifar = slices(TASKS["cifar"], {"train": 50000, "test": 10000})
    assert cifar == {"train800": [("train", 0, 800)], "val200": [("train", 45000, 45200)], "test": [("test", 0, 10000)]}
    pets = slices(TASKS["oxford_iiit_pet"], {"train": 3680, "test": 3669})
    assert pets["val200"] == [("train", 2944, 3144)]  # 80 % of 3680
    dspr = slices(TASKS["dsprites_loc"], {"train": 737280})  # 80 % train, 10 % val, the rest test
    assert dspr["val200"] == [("train", 589824, 590024)] and dspr["test"] == [("train", 663552, 737280)]
    euro = slices(TASKS["eurosat"], {"train": 27000})  # 60 / 20 / 20
    assert euro["val200"] == [("train", 16200, 16400)] and euro["test"] == [("train", 21600, 27000)]
    norb = slices(TASKS["smallnorb_azi"], {"train": 24300, "test": 24300})  # val = test[:50%], test = test[50%:]
    assert norb["val200"] == [("test", 0, 200)] and norb["test"] == [("test", 12150, 24300)]
    dtd = slices(TASKS["dtd"], {"train": 1880, "validation": 1880, "test": 1880})
    assert dtd["val200"] == [("validation", 0, 200)] and dtd["test"] == [("test", 0, 1880)]
    assert len(TASKS) == 19 and TASKS["kitti"].version == "3.2.0" and TASKS["cifar"].version == "3.*.*"


def test_clevr_kitti_and_dsprites_labels_on_hand_made_examples():
    objects = lambda zs: {"size": np.zeros(len(zs)), "pixel_coords": np.array([[0, 0, z] for z in zs], np.float32)}
    assert [clevr_count({"objects": objects([1.0] * n)}) for n in (3, 7, 10)] == [0, 4, 7]
    # bins (0, 8], (8, 8.5], (8.5, 9], (9, 9.5], (9.5, 10], (10, 100]: the nearest object decides
    assert [clevr_dist({"objects": objects([z, 50.0])}) for z in (7.9, 8.0, 8.2, 8.7, 9.2, 9.7, 10.5)] == \
        [0, 0, 1, 2, 3, 4, 5]
    car = lambda t, z: {"type": t, "location": [0.0, 0.0, z]}
    kitti = lambda objs: {"objects": {"type": np.array([o["type"] for o in objs]),
                                      "location": np.array([o["location"] for o in objs], np.float32)}}
    # vehicles are types 0-2; bins (-100, 8], (8, 20], (20, 999], none: 1000 -> 3
    assert [kitti_dist(kitti([car(0, z)])) for z in (5.0, 8.0, 8.1, 20.0, 25.0)] == [0, 0, 1, 1, 2]
    assert kitti_dist(kitti([car(3, 2.0), car(4, 3.0)])) == 3  # a pedestrian and a cyclist: no vehicle
    assert kitti_dist(kitti([car(3, 2.0), car(1, 30.0)])) == 2
    loc, ori = TASKS["dsprites_loc"].label, TASKS["dsprites_ori"].label
    assert [loc({"label_x_position": v}) for v in (0, 1, 2, 31)] == [0, 0, 1, 15]  # 32 -> 16 bins
    assert [ori({"label_orientation": v}) for v in (0, 2, 3, 5, 39)] == [0, 0, 1, 2, 15]  # 40 -> 16 (2.5 each)
    img = TASKS["dsprites_loc"].image({"image": np.array([[[0], [1]]], np.uint8)})
    assert img.shape == (1, 2, 3) and img[0, 1].tolist() == [255, 255, 255] and img[0, 0].tolist() == [0, 0, 0]


# --- TFDS through a stand-in reader with TFDS's features ---------------------------------------
class FakeTfds:
    """TfdsReader's three methods over generated dsprites-shaped examples; labels derive from the index."""

    def __init__(self, counts, version="2.0.0", fail_at=None, error=KeyboardInterrupt):
        self.counts_, self.version_, self.fail_at, self.error, self.served = counts, version, fail_at, error, 0

    def version(self, name, wanted=()):
        return self.version_

    def counts(self, name):
        return dict(self.counts_)

    def read(self, name, split, start, stop):
        for i in range(start, stop):
            self.served += 1
            if self.fail_at is not None and self.served > self.fail_at:
                raise self.error() if self.error is KeyboardInterrupt else self.error
            yield {"image": ((np.arange(16).reshape(4, 4, 1) + i) % 2).astype(np.uint8),
                   "label_x_position": (i * 7 + (split == "train")) % 32, "split": split, "index": i}


COUNTS = {"train": 1030}  # dsprites: train800 = [0, 800), val200 = [824, 1024), test = [927, 1030)


def _expected_labels(split_ranges):
    return [(i * 7 + (s == "train")) % 32 // 2 for s, a, b in split_ranges for i in range(a, b)]


def test_tfds_task_written_as_the_loaders_read_it(tmp_path):
    line = prepare.run_task("vtab/dsprites_loc", tmp_path, False, prepare.tfds_writer("vtab/dsprites_loc",
                                                                                       FakeTfds(COUNTS)))
    assert line.startswith("done  vtab/dsprites_loc: ") and "png" in line
    cfg = prepare.dataset_config("vtab/dsprites_loc", tmp_path)
    plan = slices(TASKS["dsprites_loc"], COUNTS)
    for split, ours in (("train", "train800"), ("val", "val200"), ("test", "test")):
        lst = listing(cfg, split)
        assert lst.labels.tolist() == _expected_labels(plan[ours])
    tv = listing(cfg, "trainval")
    assert len(tv) == 1000 and tv.labels.tolist() == _expected_labels(plan["train800"] + plan["val200"])
    px = np.asarray(Image.open(listing(cfg, "test").paths[0]))
    assert px.shape == (4, 4, 3) and set(np.unique(px)) <= {0, 255}  # lossless PNG of the tiled 0/255 pixels
    m = json.loads((tmp_path / "vtab-1k" / "dsprites_loc" / "manifest.json").read_text())
    assert m["source"]["builder"] == "dsprites" and m["source"]["version"] == "2.0.0" and m["pixel_format"] == "png"
    assert m["counts"] == {"train": 800, "val": 200, "trainval": 1000, "test": 103}
    assert m["converter"] == prepare.CONVERTER and m["splits"]["test"]["fingerprint"].startswith("sha256:")
    assert m["source"]["slices"]["test"] == ["train[927:1030]"]


def test_other_builder_version_stops_unless_allowed_and_is_recorded(tmp_path):
    with pytest.raises(prepare.PrepareError, match="dsprites is version 3.0.0, the task holds 2.*"):
        prepare.run_task("vtab/dsprites_loc", tmp_path, False,
                         prepare.tfds_writer("vtab/dsprites_loc", FakeTfds(COUNTS, version="3.0.0")))
    line = prepare.run_task("vtab/dsprites_loc", tmp_path, False, prepare.tfds_writer(
        "vtab/dsprites_loc", FakeTfds(COUNTS, version="3.0.0"), ("dsprites:3.0.0",)))
    assert "note: TFDS dsprites is version 3.0.0, not 2.*.*: --allow-version names it" in line
    m = json.loads((tmp_path / "vtab-1k" / "dsprites_loc" / "manifest.json").read_text())
    assert m["source"]["version"] == "3.0.0" and m["source"]["version_held"] == "2.*.*" and m["notes"]


def test_interrupted_prepare_leaves_nothing_finished_and_resumes(tmp_path):
    dest = tmp_path / "vtab-1k" / "dsprites_loc"
    with pytest.raises(KeyboardInterrupt):
        prepare.run_task("vtab/dsprites_loc", tmp_path, False,  # interrupted after the labels (1103), among the images
                         prepare.tfds_writer("vtab/dsprites_loc", FakeTfds(COUNTS, fail_at=1500)))
    assert not dest.exists() and not list(dest.parent.glob(".*"))
    (dest.parent / ".dsprites_loc.prepare-99999" / "images").mkdir(parents=True)  # a SIGKILLed run's leftovers
    line = prepare.run_task("vtab/dsprites_loc", tmp_path, False, prepare.tfds_writer("vtab/dsprites_loc",
                                                                                       FakeTfds(COUNTS)))
    assert line.startswith("done") and not list(dest.parent.glob(".*"))
    reader = FakeTfds(COUNTS)
    again = prepare.run_task("vtab/dsprites_loc", tmp_path, False, prepare.tfds_writer("vtab/dsprites_loc", reader))
    assert "already prepared" in again and reader.served == 0
    next((dest / "images" / "test").iterdir()).unlink()  # damaged since: not verified, written again
    line = prepare.run_task("vtab/dsprites_loc", tmp_path, False, prepare.tfds_writer("vtab/dsprites_loc",
                                                                                      FakeTfds(COUNTS)))
    (aside,) = dest.parent.glob("dsprites_loc~replaced-*")  # it differs from the new copy: kept, not deleted
    assert line.startswith("done") and line.endswith(f"(its files differ) is now {aside}")
    assert len(list((aside / "images" / "test").iterdir())) == 102


def test_disk_full_is_one_line_and_leaves_no_task(tmp_path, monkeypatch, capsys):
    full = OSError(errno.ENOSPC, "No space left on device")
    # labels read (1103), then the disk fills while images are written
    monkeypatch.setattr(vtab_tfds, "TfdsReader", lambda d: FakeTfds(COUNTS, fail_at=1150, error=full))
    assert prepare.main(["tfds", "vtab/dsprites_loc", "--data-root", str(tmp_path)]) == 1
    (err,) = [x for x in capsys.readouterr().err.replace("\r", "\n").splitlines() if x.strip() and "img/s" not in x]
    assert err.startswith("error: vtab/dsprites_loc: disk full")  # one line (the rest: the progress bar)
    assert not (tmp_path / "vtab-1k" / "dsprites_loc").exists() and not list((tmp_path / "vtab-1k").glob(".*"))


# --- Hugging Face parquet ----------------------------------------------------------------------
def _jpeg(seed, quality=90):
    buf = io.BytesIO()
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _parquet(path, n, classes, seed, image_col="img"):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    images = [{"bytes": _jpeg(seed + i), "path": f"{i}.jpg"} for i in range(n)]
    pq.write_table(pa.table({image_col: images, "label": [i % classes for i in range(n)]}), path)


def _mapping(tmp_path, name, repo, splits, columns=None):
    path = tmp_path / "mirror.yaml"
    path.write_text(json.dumps({"columns": columns or {"image": "img", "label": "label"}, "splits": splits,
                                "tasks": {name: {"repo": repo, "revision": "abc123"}}}))
    return path


@pytest.mark.process
def test_hf_parquet_vtab_task_offline(tmp_path, capsys):
    snap = tmp_path / "snap" / "vtab-1k_dtd" / "data"
    for split, n, seed in (("train", 30, 0), ("validation", 20, 100), ("test", 25, 200)):
        _parquet(snap / f"{split}-00000-of-00001.parquet", n, 5, seed)
    mapping = _mapping(tmp_path, "vtab/dtd", "someone/vtab-1k_dtd",
                       {"train800": "train", "val200": "validation", "test": "test"})
    out = tmp_path / "data"
    proc = run_cli("-m", "bench.data", "prepare", "hf", "vtab/dtd", "--mapping", str(mapping),
                   "--from", str(tmp_path / "snap"), "--data-root", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "done  vtab/dtd: train 30, val 20, trainval 50, test 25, jpeg q90" in proc.stdout
    cfg = prepare.dataset_config("vtab/dtd", out)
    lst = listing(cfg, "test")
    assert lst.labels.tolist() == [i % 5 for i in range(25)]
    assert open(lst.paths[3], "rb").read() == _jpeg(203)  # the bytes as they were, no re-encoding
    m = json.loads((out / "vtab-1k" / "dtd" / "manifest.json").read_text())
    assert m["source"]["repo"] == "someone/vtab-1k_dtd" and m["source"]["revision"] == "abc123"
    assert m["jpeg_quality"] == 90 and all(v.startswith("sha256:") for f in m["source"]["files"].values()
                                           for v in f.values())

    bad = _mapping(tmp_path, "vtab/dtd", "someone/vtab-1k_dtd",
                   {"train800": "train", "val200": "validation", "test": "test"}, {"image": "image", "label": "label"})
    assert prepare.main(["hf", "vtab/dtd", "--mapping", str(bad), "--from", str(tmp_path / "snap"),
                         "--data-root", str(tmp_path / "other")]) == 1
    assert "has no column(s) ['image']" in capsys.readouterr().err.replace("\r", "\n").splitlines()[-1]
    assert not (tmp_path / "other" / "vtab-1k" / "dtd").exists()
    nosplit = _mapping(tmp_path, "vtab/dtd", "someone/vtab-1k_dtd", {"train800": "train", "val200": "val",
                                                                      "test": "test"})
    assert prepare.main(["hf", "vtab/dtd", "--mapping", str(nosplit), "--from", str(tmp_path / "snap"),
                         "--data-root", str(tmp_path / "other")]) == 1


def test_hf_parquet_fgvc_task(tmp_path):
    snap = tmp_path / "snap" / "FGVC"
    for split, n, seed in (("train", 12, 0), ("val", 6, 50), ("test", 9, 90)):
        _parquet(snap / split / "part-0.parquet", n, 3, seed)
    mapping = _mapping(tmp_path, "fgvc/cub", "someone/FGVC", {"train": "train", "val": "val", "test": "test"})
    assert prepare.main(["hf", "fgvc/cub", "--mapping", str(mapping), "--from", str(tmp_path / "snap"),
                         "--data-root", str(tmp_path / "data")]) == 0
    cfg = prepare.dataset_config("fgvc/cub", tmp_path / "data")
    assert listing(cfg, "val").labels.tolist() == [i % 3 for i in range(6)] and len(listing(cfg, "test")) == 9


# --- FGVC official archives + VPT JSON ------------------------------------------------------------
@pytest.mark.process
def test_fgvc_archive_nabirds_val_lacking_two_classes_keeps_one_label_map(tmp_path, capsys):
    src, splits = tmp_path / "nabirds", tmp_path / "vpt_splits"
    ids = [295, 296, 297, 400, 401]  # NABirds-like sparse class ids
    tables = {"train": {}, "val": {}, "test": {}}
    for split, per in (("train", 3), ("val", 1), ("test", 2)):
        for c in ids if split != "val" else ids[:3]:  # val lacks the classes 400 and 401
            for k in range(per):
                rel = f"{c:04d}/{split}_{k}.jpg"
                (src / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
                (src / "images" / rel).write_bytes(_jpeg(c * 10 + k + len(split)))
                tables[split][rel] = c
    splits.mkdir()
    for split, t in tables.items():
        (splits / f"{split}.json").write_text(json.dumps(t))
    out = tmp_path / "data"
    proc = run_cli("-m", "bench.data", "prepare", "fgvc", "fgvc/nabirds", "--from", str(src), "--splits", str(splits),
                   "--data-root", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "note: val lacks 2 of the 5 classes" in proc.stdout
    cfg = prepare.dataset_config("fgvc/nabirds", out)
    index = {c: i for i, c in enumerate(ids)}  # one map over all three files
    for split in ("train", "val", "test"):
        lst = listing(cfg, split)
        want = [index[tables[split][p.split("images/", 1)[1]]] for p in lst.paths]
        assert lst.labels.tolist() == want
    assert set(listing(cfg, "val").labels.tolist()) == {0, 1, 2}
    m = json.loads((out / "fgvc" / "nabirds" / "manifest.json").read_text())
    assert set(m["source"]["split_files"]) == {"train.json", "val.json", "test.json"} and m["source"]["classes"] == 5
    again = ["fgvc", "fgvc/nabirds", "--from", str(src), "--splits", str(splits), "--data-root", str(out)]
    assert prepare.main([*again, "--force"]) == 0  # the same files (hard links) again: the old copy deleted
    assert sorted(p.name for p in (out / "fgvc").iterdir()) == ["nabirds"]
    capsys.readouterr()
    shutil.rmtree(splits)
    assert prepare.main(["fgvc", "fgvc/cub", "--from", str(src), "--splits", str(splits), "--data-root", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: fgvc/cub: ") and "not found" in err and err.count("\n") == 1
    assert not (out / "fgvc" / "CUB_200_2011").exists()


def test_missing_tfds_builder_is_one_line_and_prepared_source_reaches_the_record(tmp_path, monkeypatch, capsys):
    class Missing(FakeTfds):
        def version(self, name):
            raise FileNotFoundError(f"no {name} in the data dir")

    monkeypatch.setattr(vtab_tfds, "TfdsReader", lambda d: Missing(COUNTS))
    assert prepare.main(["tfds", "vtab/dsprites_loc", "--data-root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: vtab/dsprites_loc: TFDS builder 'dsprites' cannot be read") and err.count("\n") == 1
    assert not (tmp_path / "vtab-1k" / "dsprites_loc").exists()
    monkeypatch.setattr(vtab_tfds, "TfdsReader", lambda d: FakeTfds(COUNTS))
    assert prepare.main(["tfds", "vtab/dsprites_loc", "--data-root", str(tmp_path)]) == 0
    from bench.analysis.published import data_pipeline

    source = prepared_source(prepare.dataset_config("vtab/dsprites_loc", tmp_path))
    assert source["source"]["kind"] == "tfds" and source["pixel_format"] == "png"
    assert data_pipeline({"format": "vtab_txt", "pixel_format": "png", "manifest": source}) == "tfds"


def test_hf_image_folder_task(tmp_path):
    snap = tmp_path / "snap" / "vtab-1k_eurosat"
    names = ["AnnualCrop", "Forest", "River"]
    for split, n in (("train", 9), ("validation", 6), ("test", 6)):
        for i in range(n):
            p = snap / split / names[i % 3] / f"{i}.jpg"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(_jpeg(i + 100 * len(split), quality=80))
    mapping = _mapping(tmp_path, "vtab/eurosat", "someone/vtab-1k_eurosat",
                       {"train800": "train", "val200": "validation", "test": "test"})
    assert prepare.main(["hf", "vtab/eurosat", "--mapping", str(mapping), "--from", str(tmp_path / "snap"),
                         "--data-root", str(tmp_path / "data")]) == 0
    cfg = prepare.dataset_config("vtab/eurosat", tmp_path / "data")
    lst = listing(cfg, "test")  # class folders in sorted order, images in name order: 0 3 1 4 2 5
    assert lst.labels.tolist() == [0, 0, 1, 1, 2, 2]
    m = json.loads((tmp_path / "data" / "vtab-1k" / "eurosat" / "manifest.json").read_text())
    assert m["source"]["classes"] == names and m["source"]["image_folders"]["test"] == "test" and m["jpeg_quality"] == 80


# --- a copy already there: refused, kept aside, locked ------------------------------------------
def _two_task_mirror(tmp_path, seed=0):
    """A local snapshot of two VTAB tasks (dtd, eurosat) as parquet files, and its mapping."""
    for task in ("dtd", "eurosat"):
        for split, n, off in (("train", 8, 0), ("validation", 4, 50), ("test", 6, 90)):
            _parquet(tmp_path / "snap" / f"vtab-1k_{task}" / f"{split}-00000-of-00001.parquet", n, 3, seed + off)
    path = tmp_path / "mirror.yaml"
    path.write_text(json.dumps({"columns": {"image": "img", "label": "label"},
                                "splits": {"train800": "train", "val200": "validation", "test": "test"},
                                "tasks": {f"vtab/{t}": {"repo": f"someone/vtab-1k_{t}", "revision": "r1"}
                                          for t in ("dtd", "eurosat")}}))
    return ["--mapping", str(path), "--from", str(tmp_path / "snap")]


def _hand_placed_dtd(root):
    """NOAH's layout of VTAB-1k dtd as a user copies it in: JPEGs and the split files, no manifest.json."""
    task = root / "vtab-1k" / "dtd"
    lines = {}
    for split, n in (("train800", 6), ("val200", 3), ("test", 4)):
        lines[split] = []
        for i in range(n):
            rel = f"images/{split}/{i}.jpg"
            (task / rel).parent.mkdir(parents=True, exist_ok=True)
            (task / rel).write_bytes(_jpeg(1000 + 10 * len(split) + i))
            lines[split].append(f"{rel} {i % 2}")
    for split, ls in lines.items():
        (task / f"{split}.txt").write_text("\n".join(ls) + "\n")
    (task / "train800val200.txt").write_text("\n".join(lines["train800"] + lines["val200"]) + "\n")
    return _tree(task)


def _tree(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _lines(capsys):
    out, err = capsys.readouterr()
    keep = lambda s: [x for x in s.replace("\r", "\n").splitlines() if x.strip() and "img/s" not in x]
    return keep(out), keep(err)


def test_hand_placed_task_is_refused_the_others_prepared_and_replace_keeps_it_aside(tmp_path, capsys):
    data, src = tmp_path / "data", _two_task_mirror(tmp_path)
    original = _hand_placed_dtd(data)
    # every task of the mirror: dtd refused and untouched, eurosat prepared, exit 1, the refusal named at the end
    assert prepare.main(["hf", *src, "--data-root", str(data)]) == 1
    out, err = _lines(capsys)
    assert out[0].startswith("done  vtab/eurosat: ") and len(out) == 1
    assert err[0].startswith(f"error: vtab/dtd: {data / 'vtab-1k' / 'dtd'} exists and was not written by `prepare`")
    assert "--replace" in err[0] and err[1].startswith("error: refused 1 of 2 tasks") and "vtab/dtd" in err[1]
    assert len(err) == 2 and _tree(data / "vtab-1k" / "dtd") == original
    assert (data / "vtab-1k" / "eurosat" / "manifest.json").is_file()
    assert sorted(p.name for p in (data / "vtab-1k").iterdir()) == ["dtd", "eurosat"]  # no temporary or lock files

    # one task named: one line
    assert prepare.main(["hf", "vtab/dtd", *src, "--data-root", str(data)]) == 1
    assert len(_lines(capsys)[1]) == 1 and _tree(data / "vtab-1k" / "dtd") == original
    # --force does not override a copy prepare did not write
    assert prepare.main(["hf", "vtab/dtd", *src, "--data-root", str(data), "--force"]) == 1
    assert len(_lines(capsys)[1]) == 1 and _tree(data / "vtab-1k" / "dtd") == original

    # --replace: prepared, the hand-placed copy moved aside whole and named in the line
    assert prepare.main(["hf", "vtab/dtd", *src, "--data-root", str(data), "--replace"]) == 0
    out, err = _lines(capsys)
    (aside,) = [p for p in (data / "vtab-1k").iterdir() if p.name.startswith("dtd~replaced-")]
    assert out[0].startswith("done  vtab/dtd: ") and out[-1].endswith(f"(not written by prepare) is now {aside}")
    assert _tree(aside) == original and not err
    assert json.loads((data / "vtab-1k" / "dtd" / "manifest.json").read_text())["source"]["revision"] == "r1"
    assert len(listing(prepare.dataset_config("vtab/dtd", data), "test")) == 6


def test_force_keeps_a_copy_that_differs_and_deletes_only_an_identical_one(tmp_path, capsys):
    data, src = tmp_path / "data", _two_task_mirror(tmp_path)
    task = data / "vtab-1k" / "dtd"
    assert prepare.main(["hf", "vtab/dtd", *src, "--data-root", str(data)]) == 0
    first = _tree(task)
    assert prepare.main(["hf", "vtab/dtd", *src, "--data-root", str(data), "--force"]) == 0  # same bytes again
    assert sorted(p.name for p in task.parent.iterdir()) == ["dtd"]
    (task / "notes.txt").write_text("mine")  # a file prepare did not write: the copy differs
    _two_task_mirror(tmp_path, seed=7)  # and the mirror changed
    assert prepare.main(["hf", "vtab/dtd", *src, "--data-root", str(data), "--force"]) == 0
    out, _ = _lines(capsys)
    (aside,) = [p for p in task.parent.iterdir() if p.name.startswith("dtd~replaced-")]
    assert out[-1].endswith(f"(its files differ) is now {aside}")
    kept = _tree(aside)
    assert kept.pop("notes.txt") == b"mine" and {k: v for k, v in kept.items() if k != "manifest.json"} == \
        {k: v for k, v in first.items() if k != "manifest.json"}
    assert _tree(task)["images/test/000000.jpg"] != first["images/test/000000.jpg"]


def test_read_only_data_root_verifies_a_prepared_task_and_refuses_to_write_in_one_line(tmp_path, capsys,
                                                                                       monkeypatch):
    data, src = tmp_path / "data", _two_task_mirror(tmp_path)
    assert prepare.main(["hf", "vtab/dtd", *src, "--data-root", str(data)]) == 0

    def denied(path):
        raise PermissionError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(prepare, "_open_lock", denied)
    capsys.readouterr()
    assert prepare.main(["hf", "vtab/dtd", *src, "--data-root", str(data)]) == 0
    assert _lines(capsys)[0][0].startswith("ok    vtab/dtd: already prepared")
    assert prepare.main(["hf", "vtab/dtd", *src, "--data-root", str(data), "--force"]) == 1
    assert _lines(capsys)[1] == [f"error: vtab/dtd: cannot write under {data / 'vtab-1k'} ([Errno 30] Read-only "
                                 f"file system: '{data / 'vtab-1k' / '.dtd.prepare.lock'}'); choose a writable "
                                 f"--data-root"]


def test_two_prepares_of_one_task_at_once_wait_and_keep_each_others_folders(tmp_path, capsys):
    import threading

    data, src = tmp_path / "data", _two_task_mirror(tmp_path)
    mapping = prepare.load_mapping(tmp_path / "mirror.yaml")
    stale = data / "vtab-1k" / ".dtd.prepare-99999-0000"  # a killed run's leftovers: its lock is free
    stale.mkdir(parents=True)
    inside, go, results = threading.Event(), threading.Event(), {}
    write = prepare.hf_writer("vtab/dtd", mapping, tmp_path / "snap")

    def slow(w, cfg):
        inside.set()
        assert go.wait(30)
        return write(w, cfg)

    def run(key, writer):
        results[key] = prepare.run_task("vtab/dtd", data, False, writer)

    first = threading.Thread(target=run, args=("first", slow))
    first.start()
    assert inside.wait(30)
    (tmp,) = [p for p in (data / "vtab-1k").glob(".dtd.prepare-*") if p.is_dir()]
    assert not stale.exists() and tmp.name.startswith(f".dtd.prepare-{os.getpid()}-")
    second = threading.Thread(target=run, args=("second", write))
    second.start()
    for _ in range(300):  # the second says it waits, then waits
        if any(x.startswith("wait  vtab/dtd: another prepare") for x in _lines(capsys)[0]):
            break
        time.sleep(0.05)
    else:
        pytest.fail("the second prepare did not wait")
    assert tmp.is_dir() and second.is_alive() and "second" not in results  # the first's temporary folder stays
    go.set()
    first.join(30)
    second.join(30)
    assert results["first"].startswith("done  vtab/dtd") and results["second"].startswith("ok    vtab/dtd: already")
    assert sorted(p.name for p in (data / "vtab-1k").iterdir()) == ["dtd"]


def test_from_a_folder_without_the_mirrors_repository_is_one_line(tmp_path, capsys):
    src = _two_task_mirror(tmp_path)
    wrong = tmp_path / "elsewhere"  # parquet files, but of another repository: never read instead
    shutil.copytree(tmp_path / "snap" / "vtab-1k_eurosat", wrong / "vtab-1k_eurosat_v2")
    args = ["hf", "vtab/dtd", src[0], src[1], "--data-root", str(tmp_path / "data")]
    assert prepare.main([*args, "--from", str(wrong)]) == 1
    _, err = _lines(capsys)
    assert err == [f"error: --from {wrong}: no folder of the mirror someone/vtab-1k_dtd there; expected "
                   f"{wrong / 'someone/vtab-1k_dtd'} or {wrong / 'vtab-1k_dtd'} (or --from naming that folder itself)"]
    assert not (tmp_path / "data" / "vtab-1k" / "dtd").exists()
    assert prepare.main([*args, "--from", str(tmp_path / "snap" / "vtab-1k_dtd")]) == 0  # the folder itself
