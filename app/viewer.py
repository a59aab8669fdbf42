"""The server side of the browser viewer (app/static/viewer.js): the volumes it shows, written as NIfTI
files it loads by URL, and the mask it sends back on Save.

One voxel order is shared with the browser: x = image column, y = rows counted from the bottom, z =
slice, with a positive diagonal affine (NiiVue's RAS order is then the file order, so the drawing
bitmap's index x + y*W + z*W*H is voxel (x, y, z)). `to_viewer` and `from_viewer` are the only two
places that know it.
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard

import nibabel as nib
import numpy as np
from scipy import ndimage

STATIC = Path(__file__).parent / "static"
RGB = np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")])


class MaskPayloadError(ValueError):
    """The mask the browser sent is not a mask of the image on screen."""


def to_viewer(array: np.ndarray) -> np.ndarray:
    """(S, H, W[, ...]) in image order → (W, H, S[, ...]) in the viewer's voxel order."""
    return np.swapaxes(array[:, ::-1], 0, 2)


def from_viewer(volume: np.ndarray) -> np.ndarray:
    """The inverse of `to_viewer`."""
    return np.swapaxes(volume, 0, 2)[:, ::-1]


def pack_mask(mask: np.ndarray) -> str:
    """A (S, H, W) mask as the viewer's base64 bitmap (numpy packbits over its voxel order)."""
    bits = to_viewer(np.asarray(mask, dtype=bool)).ravel(order="F")
    return base64.b64encode(np.packbits(bits).tobytes()).decode("ascii")


def unpack_mask(text: str, shape: tuple[int, int, int]) -> np.ndarray:
    """The viewer's base64 bitmap as a (S, H, W) mask."""
    slices, rows, cols = shape
    try:
        packed = np.frombuffer(base64.b64decode(text, validate=True), dtype=np.uint8)
    except ValueError as exc:
        raise MaskPayloadError("the mask sent by the viewer is not valid base64") from exc
    count = slices * rows * cols
    if packed.size != (count + 7) // 8:
        raise MaskPayloadError(f"the mask sent by the viewer holds {packed.size * 8} voxels, the image {count}")
    bits = np.unpackbits(packed, count=count).astype(bool)
    return from_viewer(bits.reshape((cols, rows, slices), order="F"))


@dataclass(frozen=True)
class MaskPayload:
    """What Save receives from the viewer: the mask on screen and the threshold that made it."""

    token: str
    mask: np.ndarray  # (S, H, W) bool
    threshold: float | None
    threshold_method: str
    edited: bool
    slice_index: int


def read_payload(text: str, token: str, shape: tuple[int, int, int]) -> MaskPayload:
    """Decode and check a Save payload against the scene on screen (`token`) and its grid (`shape`)."""
    if not text:
        raise MaskPayloadError("the viewer sent no mask: open an image first")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MaskPayloadError("the viewer's message is not valid JSON") from exc
    if data.get("opening"):  # a tuning session's next case, on screen from its preview before it is opened
        raise MaskPayloadError("the case on screen is still opening; save again in a moment (nothing was saved)")
    if data.get("token") != token:
        raise MaskPayloadError("the mask on screen belongs to another image than the one open; open it again")
    if list(data.get("dims", [])) != [shape[2], shape[1], shape[0]]:
        raise MaskPayloadError(f"the viewer's grid {data.get('dims')} does not match the image's {list(shape)}")
    mask = unpack_mask(data.get("mask", ""), shape)
    if int(mask.sum()) != data.get("voxels"):
        raise MaskPayloadError(
            f"the mask arrived with {int(mask.sum())} voxels but the viewer showed "
            f"{data.get('voxels')}; nothing was saved"
        )
    threshold = data.get("threshold")
    return MaskPayload(
        token=token,
        mask=mask,
        threshold=None if threshold is None else float(threshold),
        threshold_method=str(data.get("threshold_method") or "manual"),
        edited=bool(data.get("edited")),
        slice_index=int(data.get("slice", 0)),
    )


@dataclass(frozen=True)
class PaneThresholds:
    """The threshold each pane of the compare view shows: (value, how it was chosen)."""

    first: tuple[float, str]
    second: tuple[float, str]


def read_thresholds(text: str, token: str) -> PaneThresholds:
    """Decode the viewer's thresholds of both panes (what swapping the methods keeps) for scene `token`."""
    try:
        data = json.loads(text) if text else None
    except json.JSONDecodeError as exc:
        raise MaskPayloadError("the viewer's message is not valid JSON") from exc
    if not isinstance(data, dict) or data.get("token") != token:
        raise MaskPayloadError("the image on screen has changed; open it again")
    panes = []
    for pane in ("first", "second"):
        shown = data.get(pane) or {}
        value = shown.get("threshold")
        if not isinstance(value, (int, float)) or not np.isfinite(value):
            raise MaskPayloadError(f"the viewer sent no threshold for the {pane} method")
        panes.append((float(value), str(shown.get("method") or "manual")))
    return PaneThresholds(*panes)


class VolumeStore:
    """Short-lived folders of files the page serves: a viewer scene's NIfTI volumes (dropped when the
    reader's view moves on) or an export (swept as it ages); all of them go when the app starts or stops."""

    def __init__(self, root: Path):
        self.root = root.resolve()
        self.clear()

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True, exist_ok=True)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def new_scene(self) -> tuple[str, Path]:
        token = secrets.token_urlsafe(12)
        folder = self.root / token
        folder.mkdir()
        return token, folder

    def sweep(self, max_age_s: float) -> None:
        """Drop the folders older than `max_age_s` seconds."""
        cutoff = time.time() - max_age_s
        for folder in self.root.iterdir():
            if folder.is_dir() and folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)

    def drop(self, token: str | None) -> None:
        if _is_token(token):
            shutil.rmtree(self.root / token, ignore_errors=True)

    def folder(self, token: str) -> Path:
        """The folder of a scene still on screen."""
        folder = self.root / token
        if not _is_token(token) or not folder.is_dir():
            raise MaskPayloadError("the image on screen has changed; open it again")
        return folder

    @staticmethod
    def url(path: Path) -> str:
        return f"/gradio_api/file={path}"


def _is_token(token: str | None) -> TypeGuard[str]:
    return token is not None and token not in ("", ".", "..") and "/" not in token


def mask_outline(mask: np.ndarray) -> np.ndarray:
    """The in-slice border of a (S, H, W) mask: its voxels with a 4-neighbour outside it (or off the image)."""
    cross = ndimage.generate_binary_structure(2, 1)[None]
    mask = np.asarray(mask, dtype=bool)
    return mask & ~ndimage.binary_erosion(mask, structure=cross, border_value=0)


def write_volume(path: Path, array: np.ndarray, spacing: tuple[float, float, float]) -> Path:
    """Write (S, H, W) float or (S, 3, H, W) RGB pixels as a NIfTI the viewer can load."""
    if array.ndim == 4 and array.shape[1] == 3:
        rgb = np.clip(np.moveaxis(array, 1, -1), 0, 255).astype(np.uint8)
        voxels = np.empty(rgb.shape[:-1], dtype=RGB)
        for index, name in enumerate("RGB"):
            voxels[name] = rgb[..., index]
        data = to_viewer(voxels)
    else:
        data = to_viewer(np.asarray(array.reshape(array.shape[0], *array.shape[-2:]), dtype=np.float32))
    affine = np.diag([spacing[0], spacing[1], spacing[2], 1.0])
    image = nib.Nifti1Image(np.ascontiguousarray(data), affine)
    image.header.set_xyzt_units("mm")
    nib.save(image, path)
    return path


def niivue_script_tags() -> str:
    """`<script>` tags for NiiVue's UMD build (shipped in app/static/niivue) and the viewer."""
    return "".join(
        f'<script src="{VolumeStore.url(STATIC / name)}"></script>' for name in ("niivue/niivue.umd.js", "viewer.js")
    )
