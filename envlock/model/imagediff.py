"""Pure: why an image artifact differs between the original and its replay — its pixels
compared (Pillow, when importable: it is optional). "The same pixels" means only the
file's encoding or metadata (a PNG's timestamp chunk, EXIF) differs.
"""

from __future__ import annotations

import io

SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff")
MAX_BYTES = 64 << 20


def is_image(path: str) -> bool:
    return path.lower().endswith(SUFFIXES)


def explain(path: str, original: bytes, replay: bytes) -> str:
    """One line: how two versions of the image ``path`` differ, pixel by pixel."""
    del path
    try:
        from PIL import Image, ImageChops
    except ImportError:
        return "Pillow is not installed here: compared by sha256 only"
    try:
        a = Image.open(io.BytesIO(original)).convert("RGBA")
        b = Image.open(io.BytesIO(replay)).convert("RGBA")
    except (OSError, ValueError):
        return "not an image Pillow can read: compared by sha256 only"
    if a.size != b.size:
        return f"size differs: {a.size[0]}x{a.size[1]} -> {b.size[0]}x{b.size[1]}"
    channels = ImageChops.difference(a, b).split()
    mask = channels[0]
    for band in channels[1:]:
        mask = ImageChops.lighter(mask, band)  # per pixel: its largest channel difference
    box = mask.getbbox()
    if box is None:
        return (f"the same pixels ({a.size[0]}x{a.size[1]}); only the file's encoding or "
                "metadata differs")
    largest = mask.getextrema()[1]
    changed = mask.point(lambda v: 255 if v else 0).histogram()[255]
    total = a.size[0] * a.size[1]
    left, top, right, bottom = box
    return (f"{changed} of {total} pixels differ ({100 * changed / total:.2g}%), largest "
            f"channel difference {largest}/255, within x {left}..{right - 1}, "
            f"y {top}..{bottom - 1}")
