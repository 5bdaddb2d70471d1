"""Class-folder datasets: ImageNet-1k, and Oxford Flowers / Stanford Cars as the SSF code reads them.

    <root>/train/<class>/<image>      trained on (trainval)
    <root>/val/<class>/<image>        evaluated on (test)

Labels are the class folder's index in sorted order, as timm's and torchvision's folder
datasets assign them, so ImageNet's labels are the standard 1000-way indices (sorted WordNet
ids). SSF evaluates Flowers and Cars on the `val` folder and ImageNet on `val/` (anchors.md 1.3-1.4).
"""
from bench.data.files import README, DataError, Listing, class_folders, dataset_root, missing, subfolders

SPLIT_FOLDERS = {"trainval": "train", "test": "val"}
EXPECTED = "train/<class>/<image> and val/<class>/<image>"


def list_split(cfg, split: str) -> Listing:
    root = dataset_root(cfg)
    train = root / SPLIT_FOLDERS["trainval"]
    if not train.is_dir():
        raise missing(cfg, train, EXPECTED)
    classes = subfolders(train)  # the class list comes from the training folder, whatever the split
    if len(classes) != cfg.num_classes:
        raise DataError(f"dataset {cfg.name!r}: {train} has {len(classes)} class folders, expected "
                        f"{cfg.num_classes}; see {README}")
    folder = root / SPLIT_FOLDERS[split]
    if not folder.is_dir():
        raise missing(cfg, folder, EXPECTED)
    return class_folders(cfg, folder, classes)[0]
