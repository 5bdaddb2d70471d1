"""Split fingerprints: order, labels and identifiers count; the data's location does not."""
import shutil

from bench.config import DatasetConfig
from bench.data import describe, load_splits
from bench.data.generated import split_fingerprint
from bench.data.fingerprint import fingerprint, relative_ids


def test_fingerprint_depends_on_order_ids_and_labels():
    base = fingerprint(["a.png", "b.png"], [0, 1])
    assert base.startswith("sha256:") and base == fingerprint(["a.png", "b.png"], [0, 1])
    assert base != fingerprint(["b.png", "a.png"], [1, 0])  # order
    assert base != fingerprint(["a.png", "b.png"], [0, 2])  # a label
    assert base != fingerprint(["a.png", "c.png"], [0, 1])  # an image


def test_relative_ids_ignore_the_root(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert relative_ids([str(a / "x" / "1.png")], a) == relative_ids([str(b / "x" / "1.png")], b) == ["x/1.png"]
    assert relative_ids(["/elsewhere/1.png"], a) == ["/elsewhere/1.png"]


def test_mini_fingerprint_trainval_is_train_then_val():
    cfg = DatasetConfig(name="mini/digits", benchmark="mini", task="digits", group="natural", num_classes=10,
                        image_size=32)
    fps = {s: split_fingerprint(cfg, s) for s in ("train", "val", "trainval", "test")}
    assert len(set(fps.values())) == 4
    d = describe(cfg, load_splits(cfg, ["test"], (0.5,) * 3, (0.5,) * 3))
    assert d["splits"]["test"]["fingerprint"] == fps["test"]
