"""Fixture trees in each real on-disk format, a few tiny images each (built in tmp_path, never downloaded).

Labels follow a known rule (entry i of a split has label i % classes) so tests can check them.
`to_real_shapes` rewrites a tree's images at the sizes and modes real datasets have, and
`real_images` yields such images in memory, for the real-size tier (tests/test_realsize.py).
"""
import json
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from bench.config import DatasetConfig


def image(path: Path, seed: int = 0, size: tuple[int, int] = (12, 9)) -> Path:
    """A small random RGB image; the suffix picks the format (.jpg, .png, .JPEG)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


# --- real shapes ------------------------------------------------------------------------------------
# (width, height) of the images real datasets hold: ImageNet's most common 500 x 375 and its portrait
# twin, other camera and web sizes, a 2048 x 1536 photo, thumbnails, VTAB-1k's small squares
# (dSprites 64, smallNORB and PatchCamelyon 96), KITTI's 1242 x 375 and two extreme aspect ratios.
REAL_SIZES = ((500, 375), (375, 500), (500, 333), (640, 480), (1024, 768), (333, 500), (2048, 1536), (120, 90),
              (64, 64), (96, 96), (1242, 375), (1200, 300), (200, 800), (800, 600), (300, 225), (32, 32))
CIFAR_SIZE = (32, 32)  # CIFAR-100's arrays
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def real_mode(k: int, jpeg: bool = True) -> str:
    """The mode of the k-th real-shape image: ImageNet-1k holds a few grayscale and CMYK JPEGs among its
    RGB ones; here every 10th image is grayscale (L) and every 25th other one CMYK (JPEG only)."""
    if k % 10 == 9:
        return "L"
    return "CMYK" if jpeg and k % 25 == 12 else "RGB"


def real_image(seed: int, size: tuple[int, int] = (500, 375), mode: str = "RGB") -> Image.Image:
    """A photo-like image of `size` (width, height) in `mode`: smooth random colour fields (a coarse
    random grid, bicubic-upsampled), so resizing, JPEG and the colour ops see gradients rather than
    white noise (and it is cheap: about a millisecond at 500 x 375)."""
    rng = np.random.default_rng(seed)
    w, h = size
    coarse = rng.integers(0, 256, (max(2, h // 48), max(2, w // 48), 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize((w, h), Image.BICUBIC).convert(mode)


def real_images(n: int, sizes=REAL_SIZES, seed: int = 0):
    """`n` real-shape images as a dataset source hands them to the transforms: decoded and converted
    to RGB (bench.data.torch_datasets.open_rgb), including the grayscale and CMYK ones."""
    for k in range(n):
        yield real_image(seed + k, sizes[k % len(sizes)], real_mode(k)).convert("RGB")


def to_real_shapes(root: Path, sizes=REAL_SIZES) -> int:
    """Rewrite every image file under `root` (sorted order, the k-th at sizes[k % len]) at a real
    dataset's size and mode (`real_mode`), keeping its name and format; returns how many."""
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    for k, path in enumerate(files):
        real_image(k, sizes[k % len(sizes)], real_mode(k, jpeg=path.suffix.lower() != ".png")).save(path)
    return len(files)


def config(name: str, data_root: Path, **overrides) -> DatasetConfig:
    """The dataset config `name` as Hydra composes it (recipe included), pointed at `data_root`."""
    import dataclasses

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from bench import CONF
    from bench.launch.identity import to_run_config

    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose("config", overrides=[f"dataset={name}"])
    rc = to_run_config(OmegaConf.to_container(cfg, resolve=True), [])
    return dataclasses.replace(rc.dataset, data_root=str(data_root), cache_dir="", **overrides)


# --- VTAB-1k (NOAH image+txt) --------------------------------------------------------------------
VTAB_SIZES = {"train": 6, "val": 2, "test": 5}
VTAB_SPLITS = {"train": 6, "val": 2, "trainval": 8, "test": 5}


def vtab_tree(data_root: Path, task: str = "dtd", classes: int = 3, sizes=VTAB_SIZES, folder: str | None = None) -> Path:
    """<data_root>/vtab-1k/<folder or task>/ with train800/val200/train800val200/test.txt and images/<split>/."""
    root = data_root / "vtab-1k" / (folder or task)
    files = {"train": "train800", "val": "val200", "test": "test"}
    lines = {}
    for split, n in sizes.items():
        lines[split] = []
        for i in range(n):
            rel = f"images/{files[split]}/{i:06d}.jpg"
            image(root / rel, seed=i + 1000 * list(files).index(split))
            lines[split].append(f"{rel} {i % classes}")
    # NOAH duplicates the images of train800val200 into their own folder
    tv = []
    for k, line in enumerate(lines["train"] + lines["val"]):
        rel, label = line.split()
        new = f"images/train800val200/{k:06d}.jpg"
        (root / new).parent.mkdir(parents=True, exist_ok=True)
        (root / new).write_bytes((root / rel).read_bytes())
        tv.append(f"{new} {label}")
    for name, content in (("train800", lines["train"]), ("val200", lines["val"]), ("test", lines["test"]),
                          ("train800val200", tv)):
        (root / f"{name}.txt").write_text("\n".join(content) + "\n")
    return root


# --- FGVC ------------------------------------------------------------------------------------------
def fgvc_json_tree(root: Path, image_dir: str = "images", ids=(3, 7, 9), sizes=(6, 3, 4)) -> Path:
    """VPT JSON: {train,val,test}.json with raw class ids `ids` (remapped to 0..len-1 in sorted order)."""
    for split, n in zip(("train", "val", "test"), sizes):
        entries = {}
        for i in range(n):
            rel = f"{split}/img_{i}.jpg"
            image(root / image_dir / rel, seed=i)
            entries[rel] = ids[i % len(ids)]
        (root / f"{split}.json").write_text(json.dumps(entries))
    return root


def official_tree(root: Path, class_ids: list, n_train: int, n_test: int, image_ids: str = "int") -> Path:
    """CUB/NABirds layout: images.txt, image_class_labels.txt, train_test_split.txt, images/.

    Image k (0-based) belongs to class class_ids[k % len], is_train for k < n_train.
    """
    images, labels, split = [], [], []
    for k in range(n_train + n_test):
        key = str(k + 1) if image_ids == "int" else f"{k:08x}-0000-4000-8000-{k:012x}"
        cls = class_ids[k % len(class_ids)]
        rel = f"{cls:03d}.class/img_{k}.jpg"
        image(root / "images" / rel, seed=k)
        images.append(f"{key} {rel}")
        labels.append(f"{key} {cls}")
        split.append(f"{key} {1 if k < n_train else 0}")
    for name, content in (("images.txt", images), ("image_class_labels.txt", labels), ("train_test_split.txt", split)):
        (root / name).write_text("\n".join(content) + "\n")
    (root / "classes.txt").write_text("\n".join(f"{c} class_{c}" for c in sorted(set(class_ids))) + "\n")
    return root


def dogs_tree(root: Path, classes: int = 3, n_train: int = 6, n_test: int = 3) -> Path:
    """Stanford Dogs: train_list.mat / test_list.mat (file_list, labels 1-based) and Images/."""
    from scipy.io import savemat

    for name, n in (("train_list.mat", n_train), ("test_list.mat", n_test)):
        files, labels = [], []
        for i in range(n):
            label = i % classes + 1
            rel = f"n0000{label}-breed/{name[:4]}_{i}.jpg"
            image(root / "Images" / rel, seed=i)
            files.append([rel])
            labels.append([label])
        savemat(root / name, {"file_list": np.array(files, dtype=object), "labels": np.array(labels, dtype=float)})
    return root


def class_folders_tree(root: Path, classes: list[str], per_class: dict[str, int], ext: str = ".jpg") -> Path:
    """<root>/<split folder>/<class>/<image> for each split folder in `per_class` (images per class)."""
    for folder, n in per_class.items():
        for c in classes:
            for i in range(n):
                image(root / folder / c / f"{c}_{i}{ext}", seed=i)
    return root


def cifar_tree(root: Path, n_train: int = 10, n_test: int = 5, classes: int = 100) -> Path:
    """<root>/cifar-100-python/{train,test} as torchvision writes them (data N x 3072, fine_labels)."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, n in (("train", n_train), ("test", n_test)):
        d = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "fine_labels": [i % classes for i in range(n)]}
        with open(folder / name, "wb") as f:
            pickle.dump(d, f)
    return root


# --- NOAH's few-shot and domain-generalisation lists ----------------------------------------------
def noah_fewshot_tree(root: Path, classes: int = 3, shots=(1, 2), seeds=(0, 1), n_val: int = 3, n_test: int = 4,
                      image_dir: str = "images") -> Path:
    """<root>/annotations/{train_meta.list.num_shot_<k>.seed_<s>, val_meta.list, test_meta.list} and the
    images they list under <root>/<image_dir>/ (class-named folders, as Food-101's)."""
    ann = root / "annotations"
    ann.mkdir(parents=True, exist_ok=True)
    base = root / image_dir if image_dir else root
    pool = {c: [f"class{c}/{j}.jpg" for j in range(max(shots) + 2)] for c in range(classes)}
    for c, rels in pool.items():
        for j, rel in enumerate(rels):
            image(base / rel, seed=100 * c + j)
    for k in shots:
        for s in seeds:
            lines = [f"{pool[c][(s + j) % len(pool[c])]} {c}" for c in range(classes) for j in range(k)]
            (ann / f"train_meta.list.num_shot_{k}.seed_{s}").write_text("\n".join(lines) + "\n")
    for name, n in (("val", n_val), ("test", n_test)):
        lines = []
        for i in range(n):
            rel = f"{name}/{i}.jpg"
            image(base / rel, seed=5000 + 10 * len(name) + i)
            lines.append(f"{rel} {i % classes}")
        (ann / f"{name}_meta.list").write_text("\n".join(lines) + "\n")
    return root


def noah_domain_tree(root: Path, labels: list[int], prefix: str = "images") -> Path:
    """A domain-generalisation target: <root>/annotations/val_meta.list with 1000-way labels, paths under root."""
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    lines = []
    for i, y in enumerate(labels):
        rel = f"{prefix}/n{y:08d}/{i}.jpg"
        image(root / rel, seed=9000 + i)
        lines.append(f"{rel} {y}")
    (root / "annotations" / "val_meta.list").write_text("\n".join(lines) + "\n")
    return root
