"""Real-data loaders on fixture trees in each exact on-disk format: counts, labels, pixels, caching."""
import numpy as np
import pytest
import torch

from bench.data import DataError, describe, list_splits, load_split, load_splits
from fixtures_data import (VTAB_SPLITS, cifar_tree, class_folders_tree, config, dogs_tree, fgvc_json_tree,
                           official_tree, vtab_tree)

MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


@pytest.fixture(autouse=True)
def _no_env_roots(monkeypatch, tmp_path):
    monkeypatch.delenv("BENCH_DATA_ROOT", raising=False)
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))


def labels(ds) -> list[int]:
    return [int(y) for y in ds.labels]


# --- VTAB-1k -----------------------------------------------------------------------------------
def test_vtab_splits_counts_labels_and_pixels(tmp_path):
    vtab_tree(tmp_path, "dtd", classes=3)
    cfg = config("vtab/dtd", tmp_path, splits=VTAB_SPLITS, image_size=16)
    sizes = {s: len(load_split(cfg, s, MEAN, STD)) for s in ("train", "val", "trainval", "test")}
    assert sizes == VTAB_SPLITS
    train = load_split(cfg, "train", MEAN, STD)
    assert labels(train) == [i % 3 for i in range(6)]
    assert labels(load_split(cfg, "trainval", MEAN, STD)) == [i % 3 for i in range(6)] + [0, 1]
    x, y = train[1]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and y == 1
    assert -1.0 <= x.min() and x.max() <= 1.0  # (x/255 - 0.5) / 0.5


def test_vtab_pixels_are_a_bicubic_squash_whatever_the_cache(tmp_path):
    from PIL import Image

    root = vtab_tree(tmp_path, "dtd")
    ref = Image.open(root / "images/test/000002.jpg").convert("RGB").resize((16, 16), Image.BICUBIC)
    expected = (torch.from_numpy(np.array(ref)).permute(2, 0, 1).float() / 255 - 0.5) / 0.5
    for cache in ("disk", "memory", "none"):
        ds = load_split(config("vtab/dtd", tmp_path, splits=VTAB_SPLITS, image_size=16, cache=cache), "test", MEAN, STD)
        assert torch.allclose(ds[2][0], expected, atol=1e-6), cache


def test_disk_cache_is_built_once_and_reused(tmp_path, capsys):
    from bench.data.version import CACHE_SUBDIR as CONTENT

    vtab_tree(tmp_path, "dtd")
    cfg = config("vtab/dtd", tmp_path, splits=VTAB_SPLITS, image_size=16, cache="disk")
    first = load_split(cfg, "test", MEAN, STD)
    assert "decoding vtab/dtd test" in capsys.readouterr().out
    pixel_folders = lambda: [p for p in (tmp_path / "cache").iterdir() if p.name != CONTENT]  # content/: data versions
    (folder,) = pixel_folders()
    assert (folder / "pixels.npy").is_file() and not any(p.name.endswith(".tmp") for p in (tmp_path / "cache").iterdir())
    second = load_split(cfg, "test", MEAN, STD)
    assert "decoding" not in capsys.readouterr().out  # no JPEG decoded the second time
    assert torch.equal(first[4][0], second[4][0])
    # a different pixel setting gets its own cache entry, never stale pixels
    load_split(config("vtab/dtd", tmp_path, splits=VTAB_SPLITS, image_size=8), "test", MEAN, STD)
    assert len(pixel_folders()) == 2


def test_vtab_cifar_accepts_the_cifar100_folder_name(tmp_path):
    vtab_tree(tmp_path, "cifar", classes=5, folder="cifar100")  # V-PETL's name for NOAH's `cifar`
    cfg = config("vtab/cifar", tmp_path, splits=VTAB_SPLITS, image_size=8)
    assert len(load_split(cfg, "train", MEAN, STD)) == 6


def test_describe_names_format_counts_and_listing_hash(tmp_path):
    vtab_tree(tmp_path, "dtd")
    cfg = config("vtab/dtd", tmp_path, splits=VTAB_SPLITS, image_size=8)
    info = describe(cfg, load_splits(cfg, ["trainval", "test"], MEAN, STD, listed=list_splits(cfg, ["trainval", "test"])))
    assert info["format"] == "vtab_txt" and info["root"] == str(tmp_path / "vtab-1k" / "dtd")
    assert info["splits"]["test"]["images"] == 5 and len(info["splits"]["test"]["sha1"]) == 40
    assert info["splits"]["trainval"]["sources"] == [str(tmp_path / "vtab-1k/dtd/train800val200.txt")]
    assert info["splits"]["trainval"]["image_types"] == {".jpg": 8}
    assert info["bad_images_skipped"] == 0


# --- FGVC --------------------------------------------------------------------------------------------
def test_fgvc_json_remaps_class_ids_and_joins_train_val(tmp_path):
    root = fgvc_json_tree(tmp_path / "fgvc" / "CUB_200_2011", "images", ids=(3, 7, 9), sizes=(6, 3, 4))
    cfg = config("fgvc/cub", tmp_path, num_classes=3, image_size=16,
                 splits={"train": 6, "val": 3, "trainval": 9, "test": 4})
    train = load_split(cfg, "train", MEAN, STD)
    assert labels(train) == [0, 1, 2, 0, 1, 2]  # 3, 7, 9 -> 0, 1, 2
    assert len(load_split(cfg, "trainval", MEAN, STD)) == 9
    test = load_split(cfg, "test", MEAN, STD)
    assert labels(test) == [0, 1, 2, 0] and test[0][0].shape == (3, 16, 16)
    assert (root / "images" / "train" / "img_0.jpg").is_file()


def test_fgvc_training_is_augmented_from_the_cache(tmp_path):
    fgvc_json_tree(tmp_path / "fgvc" / "stanford_cars", "", ids=(1, 2, 3))
    cfg = config("fgvc/stanford_cars", tmp_path, num_classes=3, image_size=16, train_aug="simple", cache="disk",
                 cache_short_side=6, splits={"train": 6, "val": 3, "trainval": 9, "test": 4})
    train = load_split(cfg, "train", MEAN, STD)
    assert train.load(0).size == (8, 6)  # the cached copy: shorter side 6 (from 12 x 9)
    torch.manual_seed(0)
    a = train[0][0]
    b = train[0][0]
    assert a.shape == (3, 16, 16) and not torch.equal(a, b)  # a fresh random crop / flip each time
    plain = load_split(cfg, "train", MEAN, STD, train=False)  # the same split, evaluation pixels
    assert torch.equal(plain[0][0], plain[0][0])


def test_cub_official_layout(tmp_path):
    official_tree(tmp_path / "fgvc" / "CUB_200_2011", class_ids=[1, 2, 3], n_train=6, n_test=3)
    cfg = config("fgvc/cub", tmp_path, format="cub", num_classes=3, image_size=8, splits={"trainval": 6, "test": 3})
    assert labels(load_split(cfg, "trainval", MEAN, STD)) == [0, 1, 2, 0, 1, 2]  # 1-based -> 0-based
    assert labels(load_split(cfg, "test", MEAN, STD)) == [0, 1, 2]
    with pytest.raises(DataError, match="no 'val' split.*protocol=paper"):
        load_split(cfg, "val", MEAN, STD)


def test_nabirds_official_layout_remaps_sparse_class_ids(tmp_path):
    official_tree(tmp_path / "fgvc" / "nabirds", class_ids=[295, 400, 1000], n_train=3, n_test=3, image_ids="uuid")
    cfg = config("fgvc/nabirds", tmp_path, format="nabirds", num_classes=3, image_size=8,
                 splits={"trainval": 3, "test": 3})
    assert labels(load_split(cfg, "trainval", MEAN, STD)) == [0, 1, 2]


def test_stanford_dogs_mat_lists(tmp_path):
    dogs_tree(tmp_path / "fgvc" / "stanford_dogs", classes=3, n_train=6, n_test=3)
    cfg = config("fgvc/stanford_dogs", tmp_path, format="stanford_dogs", num_classes=3, image_size=8,
                 splits={"trainval": 6, "test": 3})
    ds = load_split(cfg, "trainval", MEAN, STD, train=False)
    assert labels(ds) == [0, 1, 2, 0, 1, 2] and ds[5][0].shape == (3, 8, 8)


def test_flowers_and_cars_as_class_folders(tmp_path):
    class_folders_tree(tmp_path / "fgvc" / "oxford_flowers", ["a", "b", "c"], {"train": 2, "val": 1})
    cfg = config("fgvc/oxford_flowers", tmp_path, format="class_folders", num_classes=3, image_size=8,
                 splits={"trainval": 6, "test": 3})
    assert labels(load_split(cfg, "trainval", MEAN, STD)) == [0, 0, 1, 1, 2, 2]
    assert labels(load_split(cfg, "test", MEAN, STD)) == [0, 1, 2]
    class_folders_tree(tmp_path / "fgvc" / "oxford_flowers", ["zz"], {"val": 1})
    with pytest.raises(DataError, match=r"class folder\(s\) \['zz'\]"):
        load_split(cfg, "test", MEAN, STD)


# --- CIFAR-100 and ImageNet ----------------------------------------------------------------------
def test_cifar100_python_pickles(tmp_path):
    cifar_tree(tmp_path / "cifar100", n_train=10, n_test=5)
    cfg = config("cifar100/cifar100", tmp_path, image_size=16, splits={"trainval": 10, "test": 5})
    test = load_split(cfg, "test", MEAN, STD)
    assert labels(test) == [0, 1, 2, 3, 4] and test[0][0].shape == (3, 16, 16)
    train = load_split(cfg, "trainval", MEAN, STD)  # timm's full train transform (RandAugment, erasing)
    assert len(train) == 10 and train[3][0].shape == (3, 16, 16) and train[3][1] == 3
    with pytest.raises(DataError, match="no 'val' split"):
        load_split(cfg, "val", MEAN, STD)


def test_imagenet_class_folders_use_sorted_wordnet_ids(tmp_path):
    wnids = ["n01498041", "n01440764", "n01443537"]
    class_folders_tree(tmp_path / "imagenet", wnids, {"train": 2, "val": 1}, ext=".JPEG")
    cfg = config("imagenet/imagenet", tmp_path, num_classes=3, image_size=8, splits={"trainval": 6, "test": 3})
    ds = load_split(cfg, "test", MEAN, STD)
    assert [p.split("/")[-2] for p in ds.load.paths] == sorted(wnids) and labels(ds) == [0, 1, 2]
    assert len(load_split(cfg, "trainval", MEAN, STD)) == 6


def test_mini_benchmark_is_unchanged():
    from bench.config import DatasetConfig

    cfg = DatasetConfig("mini/count", "mini", "count", "structured", 8, 32)
    x, y = load_split(cfg, "val", MEAN, STD).tensors
    assert x.shape == (200, 3, 32, 32) and int(y.max()) < 8


def test_large_splits_stay_memory_mapped_and_batch_like_single_items(tmp_path, monkeypatch):
    from bench.data import splits
    from bench.data.torch_datasets import PixelDataset

    monkeypatch.setattr(splits, "IN_MEMORY_BYTES", 0)  # as if the split were too large to read into memory
    vtab_tree(tmp_path, "dtd")
    ds = load_split(config("vtab/dtd", tmp_path, splits=VTAB_SPLITS, image_size=8), "test", MEAN, STD)
    assert isinstance(ds, PixelDataset) and isinstance(ds.pixels, np.memmap)
    batch = ds.__getitems__([4, 0, 2])
    for (x, y), i in zip(batch, [4, 0, 2]):
        assert torch.equal(x, ds[i][0]) and y == ds[i][1]


@pytest.mark.parametrize("cache", ["disk", "none"])
def test_unreadable_images_can_be_skipped_and_counted(tmp_path, cache):
    root = vtab_tree(tmp_path, "dtd")
    (root / "images/test/000001.jpg").write_bytes(b"broken")
    cfg = config("vtab/dtd", tmp_path, splits=VTAB_SPLITS, image_size=8, cache=cache, on_bad_image="skip")
    with pytest.warns(UserWarning, match="000001.jpg"):
        test = load_splits(cfg, ["test"], MEAN, STD)
        ds = test["test"].dataset
        if cache == "none":  # decoded lazily: the broken image is met, replaced by the next one, counted
            assert ds[1][1] == labels(ds)[2]
    assert describe(cfg, test)["bad_images_skipped"] == 1
    assert len(ds) == (4 if cache == "disk" else 5)


# --- each split listed once per run --------------------------------------------------------------
def test_a_val_protocol_run_lists_each_split_once_and_stats_each_image_once(tmp_path, monkeypatch):
    """The FGVC JSON files are parsed once each, the format lists its splits in one call, and every
    image is stat-ed once (the pixel cache's and the content hash's keys reuse the listing's stats)."""
    import json
    import os

    from bench.config import BackboneConfig, RunConfig, TrainConfig
    from bench.data.formats import FORMATS, Format, fgvc_json
    from bench.run.runner import run

    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    root = fgvc_json_tree(tmp_path / "fgvc" / "stanford_cars", "", ids=(1, 2, 3))
    images = {str(root / rel) for name in ("train", "val", "test") for rel in json.loads((root / f"{name}.json").read_text())}
    parsed, listed, stats = [], [], []
    read_json, list_splits, stat = fgvc_json._read_json, FORMATS["fgvc_json"].list, os.stat
    monkeypatch.setattr(fgvc_json, "_read_json", lambda cfg, path: parsed.append(path.name) or read_json(cfg, path))
    monkeypatch.setitem(FORMATS, "fgvc_json", Format(FORMATS["fgvc_json"].splits,
                                                     lambda cfg, splits: listed.append(list(splits)) or
                                                     list_splits(cfg, splits)))
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: (stats.append(str(p)) if str(p) in images else None) or
                        stat(p, *a, **k))
    ds = config("fgvc/stanford_cars", tmp_path, num_classes=3, image_size=16, cache="disk",
                splits={"train": 6, "val": 3, "trainval": 9, "test": 4})
    backbone = BackboneConfig(name="tiny_vit", arch="vit_tiny_patch16_224", pretrained=False,
                              kwargs={"img_size": 16, "patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2},
                              pretrained_cfg={"input_size": [3, 16, 16], "mean": list(MEAN), "std": list(STD)})
    cfg = RunConfig(method="linear", dataset=ds, backbone=backbone, protocol="val", results_dir=str(tmp_path / "out"),
                    deploy_iters=0, save_weights=False, train=TrainConfig(epochs=1, batch_size=4, progress=False))
    rec = run(cfg)
    assert rec["status"] == "completed", rec.get("error")
    assert sorted(parsed) == ["test.json", "train.json", "val.json"]  # once per file, not once per split
    assert [sorted(s) for s in listed] == [["test", "train", "val"]]  # one listing of the three splits
    assert sorted(stats) == sorted(images)  # each image once


def test_cifar_pickles_are_read_once_per_split(tmp_path, monkeypatch):
    from bench.data.formats import cifar100_python

    cifar_tree(tmp_path / "cifar100", n_train=10, n_test=5)
    loads, init = [], cifar100_python.SafeUnpickler.__init__
    monkeypatch.setattr(cifar100_python.SafeUnpickler, "__init__",
                        lambda self, f, **k: loads.append(f.name) or init(self, f, **k))
    cfg = config("cifar100/cifar100", tmp_path, image_size=16, splits={"trainval": 10, "test": 5})
    names = ("trainval", "test")
    splits = load_splits(cfg, names, MEAN, STD, listed=list_splits(cfg, names))  # as a run: listed, then loaded
    assert [len(splits[s].dataset) for s in names] == [10, 5] and labels(splits["test"].dataset) == [0, 1, 2, 3, 4]
    assert sorted(p.rsplit("/", 1)[1] for p in loads) == ["test", "train"]
