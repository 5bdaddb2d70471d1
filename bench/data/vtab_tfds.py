"""VTAB-1k from TFDS as google-research/task_adaptation defines it, and as NOAH's converter applies it.

NOAH's `data/vtab-source/get_vtab1k.py` instantiates task_adaptation's data classes with these
arguments (clevr count_all / closest_object_distance, dsprites label_x_position and
label_orientation binned to 16 classes, kitti closest_vehicle_distance, smallnorb azimuth and
elevation, diabetic_retinopathy btgraham-300) and writes their `train800`, `val200`,
`train800val200` and `test` splits. Each task here gives the same slices of the same TFDS splits
and the same label and image functions, written in numpy so that no TensorFlow is needed:

- train800 = the first 800 images of TFDS `train`;
- val200 = 200 images where that class's VTAB `val` split starts: after the 90 % (cifar, caltech101,
  clevr, svhn) or 80 % (oxford_iiit_pet, dsprites) or 60 % (eurosat, resisc45) boundary of TFDS
  `train`, or the first 200 of TFDS `validation` (dtd, flowers, patch_camelyon, sun397, dmlab, kitti,
  diabetic_retinopathy), or of TFDS `test` (smallnorb, whose VTAB val is test[:50%]);
- test = VTAB's test split: TFDS `test`, except clevr (TFDS `validation`: TFDS writes `test` without
  its scenes, whose annotations are not public), dsprites (train after 80 % + 10 %), eurosat and
  resisc45 (train after 60 % + 20 %) and smallnorb (test[50%:]).

Each builder is opened at the version task_adaptation asks for (`Task.version`, a major version
such as `3.*.*` where it gives one), except kitti, held at 3.2.0 (docs/datasets.md says why).
Another version stops `prepare` unless `--allow-version BUILDER:VERSION` names it; the manifest
records the version read. docs/datasets.md has the table of all 19 tasks.
"""
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from bench.data.formats import vtab_txt

# (TFDS split, start, stop) ranges; a split of ours is their concatenation, in this order
Slice = tuple[str, int, int]


def version_matches(version: str, spec: str) -> bool:
    """Whether TFDS version `version` (x.y.z) is what `spec` asks for (x.y.z, or with `*` for any part)."""
    have, want = version.split("."), spec.split(".")
    return len(have) == len(want) == 3 and all(w in ("*", h) for h, w in zip(have, want, strict=True))


def _label(ex) -> int:
    return int(ex["label"])


def clevr_count(ex) -> int:
    """task_adaptation clevr `count_all`: the number of objects minus 3 (3..10 objects -> 0..7)."""
    return int(len(ex["objects"]["size"])) - 3


CLEVR_DIST_THRESHOLDS = np.array([0.0, 8.0, 8.5, 9.0, 9.5, 10.0, 100.0])
KITTI_DIST_THRESHOLDS = np.array([-100.0, 8.0, 20.0, 999.0])


def _bin(value: float, thresholds: np.ndarray) -> int:
    """The largest index i with thresholds[i] < value (task_adaptation's reduce_max(where(thrs - d < 0)))."""
    return int(np.flatnonzero(thresholds - value < 0).max())


def clevr_dist(ex) -> int:
    """clevr `closest_object_distance`: the smallest depth (pixel_coords[:, 2]) binned into 6 classes."""
    return _bin(float(np.min(np.asarray(ex["objects"]["pixel_coords"], dtype=np.float32)[:, 2])), CLEVR_DIST_THRESHOLDS)


def kitti_dist(ex) -> int:
    """kitti `closest_vehicle_distance`: the nearest Car/Van/Truck (type < 3) by location z, 1000 if none, in 4 bins."""
    types = np.asarray(ex["objects"]["type"])
    z = np.asarray(ex["objects"]["location"], dtype=np.float32).reshape(-1, 3)[:, 2]
    dist = float(np.min(np.concatenate([z[types < 3], np.array([1000.0], dtype=np.float32)])))
    return _bin(dist, KITTI_DIST_THRESHOLDS)


def binned(key: str, original: int, classes: int) -> Callable:
    """dsprites: the attribute floor-divided by original/classes in float32, as task_adaptation does."""
    factor = np.float32(original / classes)

    def label(ex) -> int:
        return int(np.floor(np.float32(ex[key]) / factor))

    label.__name__ = f"{key}_in_{classes}_bins"
    return label


def attribute(key: str) -> Callable:
    def label(ex) -> int:
        return int(ex[key])

    label.__name__ = key
    return label


def rgb(ex) -> np.ndarray:
    return np.asarray(ex["image"], dtype=np.uint8)


def gray_to_rgb(ex) -> np.ndarray:
    """smallnorb: the single channel tiled to three."""
    return np.repeat(np.asarray(ex["image"], dtype=np.uint8).reshape(*np.shape(ex["image"])[:2], 1), 3, axis=2)


def binary_to_rgb(ex) -> np.ndarray:
    """dsprites: 0/1 pixels tiled to three channels and multiplied by 255."""
    return gray_to_rgb(ex) * np.uint8(255)


@dataclass(frozen=True)
class Task:
    builder: str  # TFDS name (with config)
    version: str  # the version held: task_adaptation's (`3.*.*` matches any 3.x.y), kitti's the exception
    kind: str  # how VTAB splits it: percent | three_way | validation | smallnorb | clevr
    train_percent: int = 90
    val_percent: int = 0  # three_way: the val share after train
    label: Callable = field(default=_label)
    image: Callable = field(default=rgb)


# our task folder (NOAH's) -> the task; the order of NOAH's converter
TASKS = {
    "caltech101": Task("caltech101", "3.*.*", "percent", 90),
    "cifar": Task("cifar100", "3.*.*", "percent", 90),
    "dtd": Task("dtd", "3.*.*", "validation"),
    "oxford_flowers102": Task("oxford_flowers102", "2.*.*", "validation"),
    "oxford_iiit_pet": Task("oxford_iiit_pet", "3.*.*", "percent", 80),
    "patch_camelyon": Task("patch_camelyon", "2.*.*", "validation"),
    "sun397": Task("sun397/tfds", "4.*.*", "validation"),
    "svhn": Task("svhn_cropped", "3.*.*", "percent", 90),
    "resisc45": Task("resisc45", "3.*.*", "three_way", 60, 20),
    "eurosat": Task("eurosat/rgb", "2.*.*", "three_way", 60, 20),
    "dmlab": Task("dmlab", "2.0.1", "validation"),
    # task_adaptation asks kitti:3.1.0; 3.2.0 on VPT's advice (VTAB_SETUP.md): same TFDS code, only the devkit
    # archive's checksum changed, and TFDS can no longer download the 3.1.0 one (docs/datasets.md)
    "kitti": Task("kitti", "3.2.0", "validation", label=kitti_dist),
    "smallnorb_azi": Task("smallnorb", "2.*.*", "smallnorb", label=attribute("label_azimuth"), image=gray_to_rgb),
    "smallnorb_ele": Task("smallnorb", "2.*.*", "smallnorb", label=attribute("label_elevation"), image=gray_to_rgb),
    "dsprites_loc": Task("dsprites", "2.*.*", "three_way", 80, 10, label=binned("label_x_position", 32, 16),
                         image=binary_to_rgb),
    "dsprites_ori": Task("dsprites", "2.*.*", "three_way", 80, 10, label=binned("label_orientation", 40, 16),
                         image=binary_to_rgb),
    "clevr_dist": Task("clevr", "3.*.*", "clevr", 90, label=clevr_dist),
    "clevr_count": Task("clevr", "3.*.*", "clevr", 90, label=clevr_count),
    "diabetic_retinopathy": Task("diabetic_retinopathy_detection/btgraham-300", "3.*.*", "validation"),
}
SPLITS = tuple(vtab_txt.stem(s) for s in vtab_txt.WRITTEN)  # train800, val200, test; train800val200 lists both
# VTAB-1k's sizes: the first TRAIN_SIZE of TFDS train, VAL_SIZE from where VTAB's val starts. Module attributes so
# that tests can prepare a scaled-down task from TFDS's mock data in a fraction of the time; never changed elsewhere.
TRAIN_SIZE, VAL_SIZE = 800, 200


def slices(task: Task, counts: dict[str, int]) -> dict[str, list[Slice]]:
    """Our splits as ranges of TFDS splits, given the TFDS splits' sizes (`counts`, e.g. {"train": 50000, "test": 10000})."""
    n, k, v = counts["train"], TRAIN_SIZE, VAL_SIZE
    train800 = [("train", 0, k)]
    if task.kind in ("percent", "clevr"):  # VTAB val = train[p%:]; test = TFDS test, clevr's TFDS validation
        start = task.train_percent * n // 100
        test = "validation" if task.kind == "clevr" else "test"
        return {"train800": train800, "val200": [("train", start, start + v)], "test": [(test, 0, counts[test])]}
    if task.kind == "three_way":  # train[:p%], val = train[p%:(p+q)%], test = train[(p+q)%:]
        start, val = n * task.train_percent // 100, n * task.val_percent // 100
        return {"train800": train800, "val200": [("train", start, start + v)], "test": [("train", start + val, n)]}
    if task.kind == "validation":
        return {"train800": train800, "val200": [("validation", 0, v)], "test": [("test", 0, counts["test"])]}
    if task.kind == "smallnorb":  # val = test[:50%], test = test[50%:] (TFDS rounds percent boundaries to the closest)
        half = round(50 * counts["test"] / 100)
        return {"train800": train800, "val200": [("test", 0, v)], "test": [("test", half, counts["test"])]}
    raise ValueError(f"unknown split kind {task.kind!r}")


JPEG_MAGIC = b"\xff\xd8"


def decode_jpeg_as_tf(data: bytes, channels: int) -> np.ndarray:
    """JPEG bytes as TensorFlow's `decode_jpeg`/`decode_image` with their defaults decode them (what task_adaptation
    reads): libjpeg-turbo with the fast integer IDCT and fancy upsampling; (h, w, channels) uint8. Bit-identical to
    TensorFlow 2.21 on the JPEGs of scripts/measure_jpeg_decode.py, Adobe CMYK included."""
    import simplejpeg

    fast = {"fastdct": True, "fastupsample": False}
    try:
        if simplejpeg.decode_jpeg_header(data)[2] in ("CMYK", "YCCK") and channels == 3:
            app14 = data.find(b"\xff\xee")  # Adobe's segment: marker, 2 bytes of length, "Adobe"
            if app14 < 0 or data[app14 + 4:app14 + 9] != b"Adobe":
                raise ValueError("a CMYK JPEG without Adobe's marker, whose conversion was not measured")
            cmyk = simplejpeg.decode_jpeg(data, colorspace="CMYK", **fast).astype(np.uint16)
            # TensorFlow's conversion of Adobe's (inverted) CMYK: R = K * C / 255 in integers, likewise G, B
            return (cmyk[..., 3:] * cmyk[..., :3] // 255).astype(np.uint8)
        px = simplejpeg.decode_jpeg(data, colorspace="RGB" if channels == 3 else "GRAY", **fast)
    except ValueError as e:
        raise ValueError(f"a JPEG that cannot be decoded as TensorFlow does ({e})") from None
    return px.reshape(px.shape[0], px.shape[1], channels)


class TfdsReader:
    """The one place TFDS is touched: builder version, split sizes, examples by index, as numpy.

    Reads a prepared TFDS data dir (array_record through `as_data_source`, no TensorFlow needed;
    tfrecord files through `as_dataset`, which needs TensorFlow). Tests use a reader with the same
    three methods over hand-made examples, or this one under `tfds.testing.mock_data`.
    """

    def __init__(self, data_dir: str | None = None):
        try:
            import tensorflow_datasets as tfds
        except ImportError as e:
            raise RuntimeError(f"the tfds source needs tensorflow-datasets: pip install -e '.[tfds]' ({e})") from None
        self.tfds, self.data_dir, self._builders = tfds, data_dir, {}

    def _builder(self, name: str):
        if name not in self._builders:
            self._builders[name] = self._opened(self.tfds.builder(name, data_dir=self.data_dir))
        return self._builders[name]

    @staticmethod
    def _opened(builder):
        """`builder` with its image feature's numpy decode of JPEG bytes made TensorFlow's (`decode_jpeg_as_tf`).

        TFDS's numpy path (`as_data_source`) decodes with OpenCV or PIL, whose accurate IDCT differs from the fast
        one TensorFlow uses by default, so the pixels would depend on what is installed and differ from
        task_adaptation's (docs/datasets.md has the measurement). Set on this builder's feature object only.
        """
        feature = builder.info.features["image"]
        tfds_decode = feature.decode_example_np
        channels = feature.shape[-1]

        def decode(data, *args, **kwargs):
            if bytes(data[:2]) == JPEG_MAGIC:
                return decode_jpeg_as_tf(bytes(data), channels)
            return tfds_decode(data, *args, **kwargs)  # PNG: lossless, every decoder agrees

        feature.decode_example_np = decode
        return builder

    def version(self, name: str, wanted: tuple[str, ...] = ()) -> str:
        """The version of builder `name` opened: the first of the version specs `wanted` that TFDS opens (from the
        data dir, or its own code's versions), else the one TFDS opens without a version; counts and reads use it."""
        for spec in wanted:
            try:
                self._builders[name] = self._opened(self.tfds.builder(f"{name}:{spec}", data_dir=self.data_dir))
                break
            except Exception:  # TFDS raises several types for a version it cannot open
                continue
        return str(self._builder(name).version)

    def counts(self, name: str) -> dict[str, int]:
        b = self._builder(name)
        info = {k: v.num_examples for k, v in b.info.splits.items()}
        return info or {k: len(b.as_data_source(k)) for k in ("train", "validation", "test")
                        if self._has(b, k)}  # mock data: no split info, sizes from the sources

    @staticmethod
    def _has(b, split) -> bool:
        try:
            b.as_data_source(split)
            return True
        except Exception:  # TFDS raises several types for an unknown split
            return False

    def read(self, name: str, split: str, start: int, stop: int):
        """The examples split[start:stop] in TFDS order, as dicts of numpy values."""
        b = self._builder(name)
        try:
            source = b.as_data_source(split)
        except Exception:  # tfrecord files: TensorFlow reads them
            ds = b.as_dataset(split=f"{split}[{start}:{stop}]", shuffle_files=False)
            yield from self.tfds.as_numpy(ds)
            return
        for i in range(start, min(stop, len(source))):
            yield source[i]


__all__ = ["SPLITS", "TASKS", "Task", "TfdsReader", "clevr_count", "clevr_dist", "kitti_dist", "slices",
           "version_matches"]
