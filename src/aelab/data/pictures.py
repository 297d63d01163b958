"""Decoding one image file by the stated channel rules, and fitting it to a size.

Rules (never silent: :func:`decode` says which applied): grey (``1``, ``L``)
stays one channel; ``LA`` drops alpha to grey; ``RGBA`` drops alpha;
palette (``P``) and other colour modes convert to RGB; 16-bit grey is scaled
to 8 bits (32-bit integer and float pixels are refused); ``channels``
``'grayscale'``/``'rgb'`` forces one or the other. An EXIF orientation (as a
phone photo carries) is applied first, so an image is read the way it looks.
"""
from __future__ import annotations

import hashlib
import io
import numbers
import os
import re
from pathlib import Path

import numpy as np

from ..errors import DataError, OptionError

__all__ = ["IMAGE_FILE_SUFFIXES", "IMAGE_FORMATS", "decode", "displayed_size", "parse_size", "CHANNEL_CHOICES"]

IMAGE_FILE_SUFFIXES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP",
                       ".tif": "TIFF", ".tiff": "TIFF", ".gif": "GIF", ".pgm": "PPM", ".ppm": "PPM", ".pnm": "PPM",
                       ".pbm": "PPM"}
IMAGE_FORMATS = "PNG, JPEG, WebP, BMP, TIFF, GIF, PGM/PPM"  # what IMAGE_FILE_SUFFIXES reads, for messages
# pictures of formats aelab does not read: a folder holding them says so (aelab data info), not a word before
UNREAD_PICTURE_SUFFIXES = (".heic", ".heif", ".avif", ".jxl", ".jp2", ".svg", ".ico", ".psd", ".xcf", ".tga",
                           ".dng", ".cr2", ".cr3", ".nef", ".arw", ".orf", ".rw2", ".raw", ".exr", ".hdr")
CHANNEL_CHOICES = ("grayscale", "rgb")
MAX_SIDE = 4096  # the largest --resize side: one such colour image is 48 MiB of pixels
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
SIXTEEN_BIT_MAX = 65535
EXIF_ORIENTATION = 0x0112  # 1: as stored; 2 to 8: flipped and/or turned for display
BITS_PER_SAMPLE = 258  # the TIFF tag


def parse_size(text: str | tuple[int, int]) -> tuple[int, int]:
    """``"32x32"`` (height x width) or ``(h, w)`` (any two integers: Python's, numpy's, an array's) as
    ``(h, w)`` of positive integers."""
    if _two_integers(text):
        h, w = (int(v) for v in text)
    else:
        match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
        if not match:
            raise OptionError(f"size {text!r} is not HxW", hint="e.g. 32x32 (height x width)")
        h, w = int(match[1]), int(match[2])
    if h <= 0 or w <= 0:
        raise OptionError(f"size {text!r} must be positive", hint="e.g. 32x32")
    if max(h, w) > MAX_SIDE:  # 100000x100000 ran out of memory resizing the first few images
        raise OptionError(f"size {text!r} is larger than {MAX_SIDE} pixels a side",
                          hint=f"resize to at most {MAX_SIDE}x{MAX_SIDE}; autoencoders work on far smaller images")
    return int(h), int(w)


def _two_integers(value) -> bool:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        return False
    return all(isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_)) for v in value)


def decode(path: str | Path, channels: str | None, resize: tuple[int, int] | None,
           crop: tuple[int, int] | None, max_pixels: int | None) -> tuple[np.ndarray, str, str]:
    """``(pixels uint8 (h, w) or (h, w, 3), the rule applied or '', SHA-256 of the file)``.

    ``crop`` is the centre crop ``(h, w)``, done after ``resize`` (antialiased).
    Raises DataError naming the file for anything unreadable.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DataError(f"cannot read ({e.strerror or e})", path=path) from e
    if not data:
        raise DataError("is empty (0 bytes)", path=path,
                        hint="replace it with the image, remove it, or pass --skip-bad")
    suffix = os.path.splitext(path)[1]
    expected = IMAGE_FILE_SUFFIXES.get(suffix.lower())
    try:
        with Image.open(io.BytesIO(data)) as picture:
            if expected and picture.format != expected:
                raise DataError(f"is named {suffix} but holds {picture.format or 'unknown'} data",
                                path=path, hint="rename it to its real type, or convert it")
            w, h = picture.size
            if max_pixels and w * h > max_pixels:
                raise DataError(f"is {w}x{h} = {w * h} pixels, past the decompression-bomb limit of "
                                f"{max_pixels}", path=path, hint="shrink it first, or drop it (--skip-bad)")
            orientation = _exif_orientation(picture)  # read before load(), which turns a TIFF upright itself
            pages = "only the first of its pages or frames read" if getattr(picture, "n_frames", 1) > 1 else ""
            picture.load()
            _refuse_32_bit_integers(picture, path)
            upright, turned = _upright(picture, orientation)
            pixels, rule = _to_channels(upright, channels, path)
            pixels = _fit(pixels, resize, crop, path)
    except Image.DecompressionBombError as e:
        raise DataError(f"is past Pillow's decompression-bomb limit ({_first_line(e)})", path=path,
                        hint="shrink it first, or drop it (--skip-bad)") from e
    except UnidentifiedImageError as e:
        raise DataError(f"not a readable image (no {IMAGE_FORMATS} data found in it)", path=path,
                        hint="the file is corrupt or not an image; replace it, or pass --skip-bad") from e
    except (OSError, ValueError, SyntaxError) as e:
        raise DataError(f"not a readable image ({_first_line(e)})", path=path,
                        hint="the file is corrupt or truncated; replace it, or pass --skip-bad") from e
    return pixels, "; ".join(filter(None, [pages, turned, rule])), hashlib.sha256(data).hexdigest()


def _first_line(e: Exception) -> str:
    """The first line of Pillow's message, without the repr of the in-memory file it was given."""
    line = (str(e).splitlines() or [type(e).__name__])[0]
    return re.sub(r"\s*<[\w.]+ object at 0x[0-9a-fA-F]+>", "", line) or type(e).__name__


def _exif_orientation(picture) -> int:
    """The EXIF orientation, 1 (as stored) where there is none. An EXIF block Pillow cannot parse leaves the
    image as stored, as before orientations were applied, rather than refusing an image that reads."""
    try:
        orientation = picture.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # Pillow's EXIF parser raises many kinds of errors on damaged blocks
        return 1
    return orientation if orientation in range(2, 9) else 1


def displayed_size(picture) -> tuple[int, int]:
    """``(h, w)`` of an opened picture as it is displayed (and :func:`decode` reads it): EXIF orientations 5 to
    8 turn it a quarter, swapping the two; Pillow gives a TIFF's size turned already."""
    w, h = picture.size
    turned = picture.format != "TIFF" and _exif_orientation(picture) >= 5
    return (w, h) if turned else (h, w)


def _upright(picture, orientation: int) -> tuple:
    """``(the picture as it is displayed, the rule applied or '')``."""
    if orientation == 1:
        return picture, ""
    from PIL import ImageOps

    # a no-op where the decoder applied the orientation already (TIFF), as exif_transpose then finds none
    return ImageOps.exif_transpose(picture), "turned upright by its EXIF orientation"


def _refuse_32_bit_integers(picture, path: str | Path) -> None:
    """Refuse 32-bit integer pixels rather than squash them into 16 bits. Pillow opens those as mode ``I``,
    as it does some 16-bit files (PGM); a TIFF says which it holds, other files are judged by their values."""
    if picture.mode != "I":
        return
    bits = picture.tag_v2.get(BITS_PER_SAMPLE) if hasattr(picture, "tag_v2") else None
    if max(bits if isinstance(bits, tuple) else (bits or 0,)) > 16:
        raise DataError("has 32-bit integer pixels, which aelab does not read", path=path,
                        hint="convert it to 8- or 16-bit integer pixels, or pass --skip-bad")
    low, high = picture.getextrema()
    if low < 0 or high > SIXTEEN_BIT_MAX:
        raise DataError(f"has integer pixels from {low} to {high}, beyond 16 bits (0 to {SIXTEEN_BIT_MAX}), "
                        "which aelab does not read", path=path,
                        hint="convert it to 8- or 16-bit integer pixels, or pass --skip-bad")


def _to_channels(picture, channels: str | None, path: str | Path) -> tuple[np.ndarray, str]:
    mode = picture.mode
    rule = ""
    if mode in SIXTEEN_BIT_MODES or mode == "I":  # mode I here holds 16-bit values: see _refuse_32_bit_integers
        wide = np.asarray(picture).astype(np.int64)
        pixels = ((wide * 255 + SIXTEEN_BIT_MAX // 2) // SIXTEEN_BIT_MAX).astype(np.uint8)
        rule = "16-bit scaled to 8 bits"
        if channels == "rgb":
            return np.repeat(pixels[..., None], 3, axis=2), rule + "; grey repeated to RGB"
        return pixels, rule
    if mode == "F":
        raise DataError("has 32-bit float pixels, which aelab does not read", path=path,
                        hint="convert it to 8-bit (or 16-bit) integer pixels, or pass --skip-bad")
    if mode in ("1", "L", "LA"):
        rule = "alpha dropped" if mode == "LA" else ""
        target = "RGB" if channels == "rgb" else "L"
    elif mode == "P" and _grey_palette(picture):  # a GIF or palette PNG of grey pixels is a grey image
        rule = "palette converted"
        target = "RGB" if channels == "rgb" else "L"
        mode = "L"
    else:
        rule = {"RGBA": "alpha dropped", "P": "palette converted", "RGB": ""}.get(mode, f"{mode} converted")
        target = "L" if channels == "grayscale" else "RGB"
    if channels and target != ("L" if mode in ("1", "L", "LA") else "RGB"):
        rule = (rule + "; " if rule else "") + f"forced to {channels}"
    return np.asarray(picture.convert(target), dtype=np.uint8), rule


def _grey_palette(picture) -> bool:
    """Whether every colour a palette picture uses is a grey (red, green and blue equal)."""
    palette = np.asarray(picture.getpalette() or [], dtype=np.uint8).reshape(-1, 3)
    used = np.unique(np.asarray(picture))
    used = used[used < len(palette)]
    return len(used) > 0 and bool((palette[used] == palette[used][:, :1]).all())


def _fit(pixels: np.ndarray, resize: tuple[int, int] | None, crop: tuple[int, int] | None,
         path: str | Path) -> np.ndarray:
    from PIL import Image

    if resize is not None and pixels.shape[:2] != resize:
        h, w = resize
        pixels = np.asarray(Image.fromarray(pixels).resize((w, h), Image.Resampling.LANCZOS))
    if crop is not None and pixels.shape[:2] != crop:
        h, w = crop
        if pixels.shape[0] < h or pixels.shape[1] < w:
            raise DataError(f"is {pixels.shape[0]}x{pixels.shape[1]}, smaller than the crop {h}x{w}",
                            path=path, hint="crop to a smaller size, or resize")
        top, left = (pixels.shape[0] - h) // 2, (pixels.shape[1] - w) // 2
        pixels = pixels[top:top + h, left:left + w]
    return np.ascontiguousarray(pixels)
