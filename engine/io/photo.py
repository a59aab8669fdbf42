"""PNG and JPEG photographs and greyscale images (8 and 16 bit)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .case import Case, ImageReadError, window_from_range
from .limits import ReadLimits

# PIL modes mapped to the mode we decode to and the full-scale window of that bit depth.
_GREY_MODES = {"1", "L", "LA", "I;16", "I;16B", "I;16L", "I", "F"}


def read_photo(source: str | Path, data: bytes, fmt: str, limits: ReadLimits) -> Case:
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        channels = 1 if image.mode in _GREY_MODES else 3
        limits.check_voxels(source, width * height * channels)
        image.load()
    except ImageReadError:
        raise
    except Image.DecompressionBombError:
        raise ImageReadError(source, "too large: the image exceeds the decompression-bomb pixel limit") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(source, f"not a readable {fmt.upper()} image ({_plain(exc)})") from exc
    # Phone photos store their rotation in EXIF; a reader expects the picture the right way up.
    exif_rotated = image.getexif().get(0x0112, 1) not in (1, None)
    upright = ImageOps.exif_transpose(image)
    pixels, bit_depth = _to_array(upright)
    window = (127.5, 255.0) if bit_depth == 8 else window_from_range(pixels)
    return Case(
        pixels=pixels[None],
        format=fmt,
        # DICOM codes: XC = external-camera photography; OT = other (e.g. an exported greyscale scan).
        modality="XC" if pixels.shape[0] == 3 else "OT",
        source=str(source),
        window=window,
        metadata={"mode": image.mode, "bit_depth": bit_depth, "exif_rotated": bool(exif_rotated)},
    )


def _to_array(image: Image.Image) -> tuple[np.ndarray, int]:
    """(channels, H, W) float32 and the bit depth of the stored samples."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float32)
        bit_depth = 16 if mode.startswith("I;16") or array.max(initial=0) > 255 else 8
        return array[None], bit_depth
    if mode == "F":
        return np.asarray(image, dtype=np.float32)[None], 32
    if mode in ("1", "L", "LA"):
        return np.asarray(image.convert("L"), dtype=np.float32)[None], 8
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        # Transparent regions are shown on white, as an image viewer would.
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    return rgb.transpose(2, 0, 1), 8


def _plain(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.rstrip(".")
