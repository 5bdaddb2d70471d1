"""Pixel pipelines as the SSF code has them (anchors.md 1.3), built from the dataset config.

- Evaluation, and training without augmentation, is deterministic, so its uint8 pixels can be
  cached: `squash` resizes to image_size x image_size (VTAB-1k: `--no-aug --direct-resize`,
  bicubic); `crop` resizes the shorter side to image_size / crop_pct and centre-crops (timm's
  default evaluation transform, used for FGVC, CIFAR-100 and ImageNet); `squash_crop` squashes
  to image_size / crop_pct square, then centre-crops (NOAH's few-shot evaluation, 256 -> 224).
- `simple` training augmentation is SSF's `--simple-aug`: random-resized crop (scale 0.08-1)
  and horizontal flip (FGVC). `crop_flip` is VPT's FGVC training transform
  (KMnP/vpt:src/data/transforms.py): the evaluation resize of `crop` (shorter side to
  image_size / crop_pct, 256 for 224), then a random image_size crop and a horizontal flip. `timm` is timm's full training transform: random-resized crop,
  flip, the configured auto-augment policy and random erasing (CIFAR-100, ImageNet).
  Training interpolation is timm train.py's default, `random` (bilinear or bicubic) *(analysis)*.
- Normalisation uses the backbone's own mean and std. Mixup, cutmix and label smoothing are
  applied per batch by the training loop (timm's Mixup), not here.
- timm's posterize op is replaced by `posterize_as_pillow9` in every timm transform built here
  (`replace_ops`): the official codes ran it on Pillow <= 9.5, which maps 0 bits to a black image;
  Pillow 13 raises instead, on about 1.5 images in 1,000 of `rand-m9-mstd0.5-inc1`.

The settings' choices (`VALID`) live in bench/data/choices.py, which imports nothing, so that
bench/config.py checks a command line without PIL or numpy; torch and torchvision are imported
here where a transform is built.
"""
import math

import numpy as np
from PIL import Image, ImageOps

from bench.data.choices import INTERPOLATIONS, VALID



def _mode(name: str):
    """torchvision's InterpolationMode for a `dataset.interpolation` choice."""
    from torchvision.transforms import InterpolationMode

    return InterpolationMode[name.upper()]


def validate(cfg) -> None:
    for key, valid in VALID.items():
        if getattr(cfg, key) not in valid:
            raise ValueError(f"dataset {cfg.name!r}: {key}={getattr(cfg, key)!r}; valid: {list(valid)}")


def eval_pixels(cfg):
    """PIL image -> PIL image of image_size x image_size (deterministic; what the cache stores)."""
    from torchvision import transforms as T

    s, mode = cfg.image_size, _mode(cfg.interpolation)
    if cfg.resize == "squash":
        return T.Resize((s, s), interpolation=mode)
    if cfg.resize == "squash_crop":  # NOAH's few-shot evaluation: Resize((256, 256)) then CenterCrop(224)
        big = int(s / cfg.crop_pct)
        return T.Compose([T.Resize((big, big), interpolation=mode), T.CenterCrop(s)])
    # timm's evaluation transform: Resize(floor(size / crop_pct)) then CenterCrop(size)
    return T.Compose([T.Resize(math.floor(s / cfg.crop_pct), interpolation=mode), T.CenterCrop(s)])


def to_uint8(img: Image.Image) -> np.ndarray:
    """PIL image -> (3, H, W) uint8."""
    return np.array(img.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1)  # a writable copy


def normalize(x, mean, std):
    """uint8 (..., 3, H, W) -> float, scaled to [0, 1] then normalised per channel (as ToTensor + Normalize)."""
    import torch

    m = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
    return (x.float().div_(255) - m) / s


class ToNormalized:
    """PIL image -> normalised float tensor (a class, not a lambda: DataLoader workers may pickle it).

    One image is normalised in numpy, single-threaded: torch's intra-op threads cost more than
    they save on one image, and much more on a busy machine.
    """

    def __init__(self, mean, std):
        self.scale = (1.0 / (255.0 * np.asarray(std, dtype=np.float32))).reshape(-1, 1, 1)
        self.shift = (np.asarray(mean, dtype=np.float32) / np.asarray(std, dtype=np.float32)).reshape(-1, 1, 1)

    def __call__(self, img: Image.Image):
        import torch

        return torch.from_numpy(to_uint8(img).astype(np.float32) * self.scale - self.shift)


def posterize_as_pillow9(img: Image.Image, bits_to_keep: int, **_) -> Image.Image:
    """timm's posterize op as the official codes ran it: keep the `bits_to_keep` high bits of each channel.

    SSF (timm 0.6.5, Python 3.7: Pillow <= 9.5) and NOAH (timm 0.5.4) pass RandAugment's bits
    straight to `ImageOps.posterize`, and `PosterizeIncreasing` gives 4 - int(level / 10 * 4) bits:
    0 at level 10, which `mstd0.5` draws (magnitude 9 + N(0, 0.5), clipped to 10) 2.3 % of the
    time. Pillow up to 12.x builds the lookup table i & ~(2**(8 - bits) - 1); at 0 bits the mask is
    ~255 and every value becomes 0, a black image. Pillow 13 refuses 0 bits with a ValueError, so
    0 is answered here as old Pillow did; 1 to 7 bits go to today's Pillow, whose table is the same.
    """
    if bits_to_keep >= 8:  # timm's own shortcut
        return img
    if bits_to_keep >= 1:
        return ImageOps.posterize(img, bits_to_keep)
    if img.mode not in ("L", "RGB"):  # old Pillow's lookup tables took these modes only
        raise ValueError(f"posterize: image mode {img.mode!r}; valid: ['L', 'RGB']")
    return img.point([0] * 256 * len(img.getbands()))  # mask ~(2**8 - 1) keeps no bit


def _op_replacements() -> dict:
    """timm augmentation function -> ours, for ops whose result differs from the official codes' runs."""
    from timm.data import auto_augment

    return {auto_augment.posterize: posterize_as_pillow9}


def replace_ops(transform) -> int:
    """Swap the function of every timm AugmentOp inside `transform` found in `_op_replacements`, in place.

    The op keeps its probability and magnitude draws (same random numbers, same order); only the
    function applied to the drawn level changes. Returns how many ops were replaced.
    """
    from timm.data.auto_augment import AugmentOp

    table, n, todo = _op_replacements(), 0, [transform]
    while todo:  # Compose.transforms, RandAugment.ops, AugMix.ops, AutoAugment.policy (lists of lists)
        t = todo.pop()
        if isinstance(t, (list, tuple)):
            todo.extend(t)
        elif isinstance(t, AugmentOp):
            if t.aug_fn in table:
                t.aug_fn, n = table[t.aug_fn], n + 1
        else:
            todo.extend(getattr(t, attr) for attr in ("transforms", "ops", "policy") if hasattr(t, attr))
    return n


def eval_transform(cfg, mean, std):
    """PIL image -> normalised float tensor, deterministic."""
    from torchvision import transforms as T

    return T.Compose([eval_pixels(cfg), ToNormalized(mean, std)])


def train_transform(cfg, mean, std):
    """PIL image -> normalised float tensor with the configured training augmentation."""
    from torchvision import transforms as T

    if cfg.train_aug == "none":
        return eval_transform(cfg, mean, std)
    if cfg.train_aug == "crop_flip":  # VPT: Resize(256) -> RandomCrop(224) -> RandomHorizontalFlip(0.5)
        s = cfg.image_size
        return T.Compose([T.Resize(math.floor(s / cfg.crop_pct), interpolation=_mode(cfg.interpolation)),
                          T.RandomCrop(s), T.RandomHorizontalFlip(), ToNormalized(mean, std)])
    if cfg.train_aug == "simple":
        from timm.data.transforms import RandomResizedCropAndInterpolation

        return T.Compose([RandomResizedCropAndInterpolation(cfg.image_size, scale=(0.08, 1.0), interpolation="random"),
                          T.RandomHorizontalFlip(), ToNormalized(mean, std)])
    from timm.data import create_transform

    # timm train.py defaults (anchors.md 1.3: "full timm augmentation by default"): hflip 0.5,
    # random erasing in `pixel` mode, one erasing, `random` interpolation.
    t = create_transform(cfg.image_size, is_training=True, auto_augment=cfg.auto_augment or None,
                         interpolation=cfg.train_interpolation, re_prob=cfg.re_prob, re_mode="pixel", re_count=1,
                         mean=tuple(mean), std=tuple(std))
    replace_ops(t)
    return t
