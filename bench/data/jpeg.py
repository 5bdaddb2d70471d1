"""Pixel format of image files: PNG or JPEG, and a JPEG's quality estimated from its quantisation tables.

NOAH's VTAB-1k converter saves every image as JPEG at PIL's default quality (75), and that alone
moves CIFAR-100 by about 10 points against the TFDS tensors (anchors.md 0, 5), so a record says
which pixels it read. A JPEG does not store its quality; its luminance quantisation table does
determine it when the encoder used the IJG scaling of the standard table (libjpeg, PIL, OpenCV,
TensorFlow all do): the quality whose scaled table is nearest to the file's is the estimate.
Only the header is read (PIL parses the tables on open, without decoding pixels).
"""
import statistics

from PIL import Image

# ITU T.81 Annex K.1, the luminance table every IJG-based encoder scales (natural order, as PIL reports it)
STANDARD_LUMA = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99)
SAMPLE = 32  # images per split whose headers are read for the record (evenly spaced)


def scaled_table(quality: int) -> list[int]:
    """The IJG luminance table at `quality` (1..100), clamped to 1..255 (baseline JPEG)."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return [min(255, max(1, (q * scale + 50) // 100)) for q in STANDARD_LUMA]


_TABLES = {q: scaled_table(q) for q in range(1, 101)}


def estimate_quality(img: Image.Image) -> int | None:
    """The IJG quality (1..100) whose luminance table is nearest to the image's; None if not a JPEG."""
    tables = getattr(img, "quantization", None)
    if img.format != "JPEG" or not tables:
        return None
    luma = list(tables[min(tables)])
    if len(luma) != 64:
        return None
    return min(_TABLES, key=lambda q: (sum(abs(a - b) for a, b in zip(_TABLES[q], luma)), -q))


def file_format(path: str) -> tuple[str, int | None]:
    """(format in lower case, e.g. 'png' or 'jpeg', and the JPEG quality estimate or None) of one file."""
    with Image.open(path) as img:
        return (img.format or "unknown").lower(), estimate_quality(img)


def pixel_format(paths: list[str], sample: int = SAMPLE) -> dict:
    """What a split's files are, from up to `sample` evenly spaced files' headers.

    Returns:
        {"format": "png" | "jpeg" | "mixed: jpeg/png" | ..., "jpeg_quality": median estimate or None,
         "sampled": how many files were read}; unreadable files are left out of the sample.
    """
    if not paths:
        return {"format": None, "jpeg_quality": None, "sampled": 0}
    step = max(1, len(paths) // sample)
    formats, qualities = set(), []
    for p in paths[::step][:sample]:
        try:
            fmt, q = file_format(p)
        except (OSError, ValueError):
            continue
        formats.add(fmt)
        if q is not None:
            qualities.append(q)
    fmt = formats.pop() if len(formats) == 1 else ("mixed: " + "/".join(sorted(formats)) if formats else None)
    return {"format": fmt, "jpeg_quality": int(statistics.median(qualities)) if qualities else None,
            "sampled": len(paths[::step][:sample])}


__all__ = ["STANDARD_LUMA", "estimate_quality", "file_format", "pixel_format", "scaled_table"]
