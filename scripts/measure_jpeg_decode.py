"""Does `prepare tfds` decode TFDS's stored JPEGs to the pixels task_adaptation's TensorFlow decode gives?

task_adaptation decodes every image with the TFDS feature's `decode_example` (TensorFlow's
`tf.image.decode_image(..., channels=3)`, i.e. `decode_jpeg` with its defaults) after reading with
`SkipDecoding`. TFDS's numpy path (`as_data_source`, which `prepare tfds` reads an array_record data
dir through) decodes with OpenCV when it is installed, else with PIL; `prepare tfds` replaces it for
JPEG with `decode_jpeg_as_tf`. This script encodes JPEGs the ways the JPEG-storing VTAB builders get
theirs (the original files' bytes as they are: caltech101, dtd, oxford_flowers102, oxford_iiit_pet,
resisc45, eurosat; OpenCV's `imencode` at quality 72 of a decoded array: sun397/tfds,
diabetic_retinopathy btgraham-300) over a grid of sizes, qualities, chroma subsamplings,
baseline/progressive, grayscale and Adobe CMYK, decodes each with every decoder and prints, per
decoder against TensorFlow, the largest absolute pixel difference and the share of pixels that differ.

Not part of the suite: it needs TensorFlow, which the project does not install. Run it in a
throwaway environment (docs/datasets.md names the versions measured):

    python3 -m venv /tmp/tfvenv
    /tmp/tfvenv/bin/pip install tensorflow-cpu tensorflow-datasets opencv-python-headless pillow simplejpeg
    /tmp/tfvenv/bin/python scripts/measure_jpeg_decode.py PHOTO.jpg [PHOTO.jpg ...]

PHOTO.jpg: real photographs to crop and re-encode (scikit-learn ships two:
sklearn/datasets/images/china.jpg and flower.jpg); without any, generated images are used only.
"""
import argparse
import io
import itertools
import json
import sys

import numpy as np


def sources(paths: list[str], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """RGB arrays to encode: the photos, and generated content (gradients, edges and noise)."""
    from PIL import Image

    out = {}
    for p in paths:
        out[p.rsplit("/", 1)[-1]] = np.asarray(Image.open(p).convert("RGB"))
    h, w = 480, 640
    y, x = np.mgrid[0:h, 0:w]
    smooth = np.stack([x * 255 // w, y * 255 // h, (x + y) * 255 // (w + h)], -1)
    edges = ((x // 16 + y // 16) % 2 * 200)[..., None].repeat(3, -1)
    noise = rng.integers(0, 256, (h, w, 3))
    out["generated"] = np.clip(0.5 * smooth + 0.3 * edges + 0.2 * noise, 0, 255).astype(np.uint8)
    return out


def crops(img: np.ndarray, sizes) -> list[np.ndarray]:
    return [np.ascontiguousarray(img[:min(h, img.shape[0]), :min(w, img.shape[1])]) for h, w in sizes]


def pil_jpeg(px: np.ndarray, quality: int, subsampling: int, progressive: bool, gray: bool) -> bytes:
    from PIL import Image, ImageFile

    ImageFile.MAXBLOCK = 1 << 24  # progressive q100 of noisy content overflows Pillow's default buffer

    im = Image.fromarray(px)
    if gray:
        im = im.convert("L")
    buf = io.BytesIO()
    kw = {} if gray else {"subsampling": subsampling}
    im.save(buf, format="JPEG", quality=quality, progressive=progressive, **kw)
    return buf.getvalue()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("photos", nargs="*", help="JPEG photographs to crop and re-encode")
    ap.add_argument("--json", help="also write the per-encoding results here")
    args = ap.parse_args(argv)

    import cv2
    import PIL
    from PIL import Image
    import PIL.features
    import tensorflow as tf
    import tensorflow_datasets as tfds

    feature = tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg")
    decoders = {
        "tfds numpy, PIL": lambda b: feature.decode_example_np_with_pil(b, 3),
        "tfds numpy, OpenCV": lambda b: feature.decode_example_np_with_opencv(b, 3),
        "tf.io.decode_jpeg": lambda b: tf.io.decode_jpeg(b, channels=3).numpy(),
    }
    try:  # libjpeg-turbo with TensorFlow's defaults: the fast integer IDCT, fancy (not fast) upsampling
        import simplejpeg

        decoders["simplejpeg fastdct"] = lambda b: simplejpeg.decode_jpeg(b, colorspace="RGB", fastdct=True,
                                                                           fastupsample=False)
        sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
        from bench.data.vtab_tfds import decode_jpeg_as_tf  # the same, with TensorFlow's CMYK conversion

        decoders["prepare tfds (decode_jpeg_as_tf)"] = lambda b: decode_jpeg_as_tf(b, 3)
    except ImportError as e:
        print(f"simplejpeg or bench is not importable ({e}): not measured", file=sys.stderr)

    def reference(b: bytes) -> np.ndarray:  # what task_adaptation's ImageTfdsData._image_decoder computes
        return feature.decode_example(tf.constant(b)).numpy()

    rng = np.random.default_rng(0)
    encoded = []  # (description, bytes)
    for name, img in sources(args.photos, rng).items():
        sizes = [(37, 53), (224, 224), (300, 451), (img.shape[0], img.shape[1])]
        for px, q, sub, prog in itertools.product(crops(img, sizes), (30, 50, 75, 90, 95, 100), (0, 1, 2),
                                                  (False, True)):
            tag = f"{name} {px.shape[1]}x{px.shape[0]} q{q} sub{('444', '422', '420')[sub]}{' prog' if prog else ''}"
            encoded.append(("PIL " + tag, pil_jpeg(px, q, sub, prog, gray=False)))
        for px, q in itertools.product(crops(img, sizes), (50, 75, 95)):
            encoded.append((f"PIL gray {name} {px.shape[1]}x{px.shape[0]} q{q}", pil_jpeg(px, q, 2, False, gray=True)))
            buf = io.BytesIO()  # Adobe CMYK, as Photoshop writes it (PIL writes the Adobe marker)
            Image.fromarray(px).convert("CMYK").save(buf, format="JPEG", quality=q)
            encoded.append((f"PIL CMYK {name} {px.shape[1]}x{px.shape[0]} q{q}", buf.getvalue()))
            for cv_q in (72, 95):  # the sun397/tfds and btgraham-300 builders store cv2.imencode(".jpg", q72) bytes
                b = cv2.imencode(".jpg", np.ascontiguousarray(px[..., ::-1]), [int(cv2.IMWRITE_JPEG_QUALITY), cv_q])[1]
                encoded.append((f"OpenCV encode {name} {px.shape[1]}x{px.shape[0]} q{cv_q}", b.tobytes()))
        for p in args.photos:
            if p.endswith(name):
                with open(p, "rb") as f:
                    encoded.append((f"original file {name}", f.read()))

    rows = []
    totals = {d: {"images": 0, "equal": 0, "max_abs": 0, "pixels": 0, "differing": 0, "shape": 0} for d in decoders}
    for desc, b in encoded:
        want = reference(b)
        row = {"encoding": desc}
        for d, fn in decoders.items():
            got = fn(b)
            t = totals[d]
            t["images"] += 1
            if got.shape != want.shape:
                t["shape"] += 1
                row[d] = f"shape {got.shape} vs {want.shape}"
                continue
            diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
            n_diff = int(diff.max(axis=-1).astype(bool).sum())
            t["equal"] += int(n_diff == 0)
            t["max_abs"] = max(t["max_abs"], int(diff.max()))
            pixels = int(diff.shape[0] * diff.shape[1])
            t["pixels"] += pixels
            t["differing"] += n_diff
            row[d] = {"max_abs": int(diff.max()), "differing_pixels": n_diff, "pixels": pixels}
        rows.append(row)

    print(f"tensorflow {tf.__version__}, tensorflow-datasets {tfds.__version__}, Pillow {PIL.__version__} "
          f"(libjpeg {PIL.features.version('jpg')}, turbo {PIL.features.check_feature('libjpeg_turbo')}), "
          f"OpenCV {cv2.__version__}; "
          f"{len(encoded)} JPEGs, reference: the TFDS feature's decode_example (TensorFlow)")
    print("| decoder | JPEGs | bit-identical | max abs diff | differing pixels | shape differs |")
    print("|---|---|---|---|---|---|")
    for d, t in totals.items():
        share = t["differing"] / t["pixels"] if t["pixels"] else 0.0
        print(f"| {d} | {t['images']} | {t['equal']} | {t['max_abs']} | {share:.4%} | {t['shape']} |")
    worst = {d: max((r for r in rows if isinstance(r[d], dict)), default=None,
                    key=lambda r: r[d]["differing_pixels"] / r[d]["pixels"]) for d in decoders}
    for d, r in worst.items():
        if r is not None and r[d]["differing_pixels"]:
            print(f"worst for {d}: {r['encoding']}: max {r[d]['max_abs']}, "
                  f"{r[d]['differing_pixels'] / r[d]['pixels']:.2%} of pixels")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"totals": totals, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
