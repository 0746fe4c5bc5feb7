"""Customers' photos: only JPEG, PNG and WebP, re-encoded so that nothing but the pixels is
kept (services/photos.py, with Pillow)."""
from __future__ import annotations

import io

import pytest
from PIL import Image, PngImagePlugin

from rma_service.services.photos import PhotoError, clean_photo

LIMITS = {"max_bytes": 5_000_000, "max_side": 2000}


def _encode(image: Image.Image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **kw)
    return out.getvalue()


def test_jpeg_loses_exif_gps_and_comments_but_keeps_its_orientation():
    image = Image.new("RGB", (300, 100), (250, 0, 0))
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    exif[0x010F] = "SecretCam"
    exif.get_ifd(0x8825)[2] = (48.0, 51.0, 24.0)
    raw = _encode(image, "JPEG", exif=exif.tobytes(), comment=b"home address") + b"appended secret"
    photo = clean_photo(raw, **LIMITS)
    assert photo.content_type == "image/jpeg"
    for secret in (b"SecretCam", b"home address", b"appended secret", b"Exif"):
        assert secret not in photo.data
    stored = Image.open(io.BytesIO(photo.data))
    assert stored.size == (100, 300)  # stands the right way up without the EXIF tag
    assert not stored.getexif()


def test_png_loses_text_chunks_and_keeps_transparency():
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "Private Person")
    raw = _encode(Image.new("RGBA", (40, 30), (0, 0, 255, 100)), "PNG", pnginfo=info)
    photo = clean_photo(raw, **LIMITS)
    assert photo.content_type == "image/png" and b"Private Person" not in photo.data
    stored = Image.open(io.BytesIO(photo.data))
    assert stored.mode == "RGBA" and stored.getpixel((0, 0))[3] == 100 and not stored.text


def test_webp_is_accepted_and_large_photos_are_scaled_down():
    photo = clean_photo(_encode(Image.new("RGB", (4000, 1000), (0, 200, 0)), "WEBP"), **LIMITS)
    assert photo.content_type == "image/webp" and (photo.width, photo.height) == (2000, 500)


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
def test_other_formats_are_refused_whatever_their_name(fmt):
    with pytest.raises(PhotoError) as err:
        clean_photo(_encode(Image.new("RGB", (10, 10)), fmt), **LIMITS)
    assert err.value.code == "photo_type"


def test_garbage_and_oversized_files_are_refused():
    # (A truncated photo is decoded with its missing part grey once WeasyPrint is imported in
    # the process: it sets Pillow's LOAD_TRUNCATED_IMAGES. Harmless, so not asserted here.)
    with pytest.raises(PhotoError) as err:
        clean_photo(b"<?php echo 1; ?>", **LIMITS)
    assert err.value.code == "photo_unreadable"
    whole = _encode(Image.effect_noise((200, 200), 50).convert("RGB"), "JPEG")
    with pytest.raises(PhotoError) as err:
        clean_photo(whole, max_bytes=100, max_side=2000)
    assert err.value.code == "photo_too_large"


def test_a_decompression_bomb_is_refused_before_decoding():
    # A tiny PNG that claims 10 000 × 10 000 pixels.
    raw = _encode(Image.new("1", (10_000, 10_000)), "PNG")
    assert len(raw) < 100_000
    with pytest.raises(PhotoError) as err:
        clean_photo(raw, **LIMITS)
    assert err.value.code == "photo_too_large"
