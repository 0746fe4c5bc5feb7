"""Customers' photos of returned items: checked and re-encoded before anything is stored.

Only JPEG, PNG and WebP are accepted, recognised by their content (never by the file name or
the browser's content type). Every photo is decoded and encoded again, which drops whatever
the file carried besides the pixels: EXIF (camera, GPS position, date), XMP, IPTC, comments,
ICC profiles and any bytes appended after the image. The EXIF orientation is applied first so
that a phone photo still stands the right way up once its metadata is gone.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}
# Refuse images whose pixel count would need a lot of memory to decode (decompression bombs):
# 50 megapixels is more than any phone camera delivers.
MAX_PIXELS = 50_000_000


class PhotoError(ValueError):
    """A photo that cannot be accepted; ``code`` says why (``photo_too_large``,
    ``photo_type``, ``photo_unreadable``)."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class CleanPhoto:
    content_type: str
    data: bytes
    width: int
    height: int


def clean_photo(raw: bytes, *, max_bytes: int, max_side: int) -> CleanPhoto:
    """Check ``raw`` and return it re-encoded without metadata, scaled down to ``max_side``
    pixels on its longer side. Raises ``PhotoError``."""
    if len(raw) > max_bytes:
        raise PhotoError("photo_too_large")
    if not raw:
        raise PhotoError("photo_unreadable")
    try:
        with warnings.catch_warnings():
            # Pillow's own "decompression bomb" warning (over ~89 megapixels): refuse at once.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            probe = Image.open(io.BytesIO(raw))
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise PhotoError("photo_too_large") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise PhotoError("photo_unreadable") from None
    try:
        with probe:
            fmt = probe.format
            if fmt not in FORMATS:
                raise PhotoError("photo_type")
            width, height = probe.size
            if width * height > MAX_PIXELS or width <= 0 or height <= 0:
                raise PhotoError("photo_too_large")
            probe.seek(0)  # the first frame of an animated PNG or WebP
            image = probe.copy()  # decodes the pixels: a truncated file fails here
    except PhotoError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise PhotoError("photo_unreadable") from None

    image = ImageOps.exif_transpose(image) or image
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    if fmt != "JPEG" and ("A" in image.getbands() or "transparency" in image.info):
        image = image.convert("RGBA")  # keep transparency (PNG, WebP)
    elif image.mode != "L":
        image = image.convert("RGB")  # palette, CMYK, 16-bit … become plain RGB
    # A new image from the bare pixels: nothing of the original file's metadata can survive.
    bare = Image.frombytes(image.mode, image.size, image.tobytes())
    out = io.BytesIO()
    if fmt == "JPEG":
        bare.save(out, "JPEG", quality=85, optimize=True)
    elif fmt == "PNG":
        bare.save(out, "PNG", optimize=True)
    else:
        bare.save(out, "WEBP", quality=85)
    return CleanPhoto(FORMATS[fmt], out.getvalue(), bare.width, bare.height)
