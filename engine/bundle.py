"""Model bundles: a folder with manifest.json and safetensors weights (DESIGN.md)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
FORMAT_VERSION = 1


class BundleError(ValueError):
    """A bundle that cannot be loaded; the message names the folder and the reason."""


@dataclass
class ModelBundle:
    path: Path
    manifest: dict

    @property
    def id(self) -> str:
        return self.manifest["id"]

    @property
    def method(self) -> str:
        return self.manifest["method"]

    def state_dict(self, component: str) -> dict[str, torch.Tensor]:
        """The weights of one component (e.g. "denoiser"), as float32 tensors."""
        prefix = component + "."
        tensors = load_file(self.path / WEIGHTS)
        picked = {k[len(prefix) :]: v.float() for k, v in tensors.items() if k.startswith(prefix)}
        if not picked:
            raise BundleError(f"{self.path.name}: no weights for component {component!r}")
        return picked


def save_bundle(path: Path, manifest: dict, components: dict[str, torch.nn.Module], half: bool = False) -> ModelBundle:
    """Write weights (optionally float16, halving the size) then the manifest; returns the loaded bundle."""
    path.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, module in components.items():
        for key, value in module.state_dict().items():
            value = value.detach().cpu().contiguous()
            tensors[f"{name}.{key}"] = value.half() if half and value.is_floating_point() else value
    save_file(tensors, path / WEIGHTS)
    weights_hash = hashlib.sha256((path / WEIGHTS).read_bytes()).hexdigest()
    manifest = dict(manifest)
    manifest.update(
        format_version=FORMAT_VERSION,
        id=f"{manifest['method']}-{(weights_hash if tensors else identity_hash(manifest))[:12]}",
        weights=WEIGHTS,
        weights_sha256=weights_hash,
        weights_dtype="float16" if half else "float32",
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )
    (path / MANIFEST).write_text(json.dumps(manifest, indent=2, default=_json_default))
    return ModelBundle(path, manifest)


def identity_hash(manifest: dict) -> str:
    """What names a bundle without weights (a training-free one): every empty weights file hashes alike,
    so two such bundles calibrated on different data would share an id, and with it their runs' site
    thresholds and the bundle that re-makes their maps; its config and training data tell them apart."""
    defining = json.dumps(
        {"config": manifest["config"], "data": manifest.get("data")}, sort_keys=True, default=_json_default
    )
    return hashlib.sha256(defining.encode()).hexdigest()


def update_manifest(bundle: ModelBundle, **fields) -> ModelBundle:
    """Add fields computed after the weights were saved (calibration, validation metrics)."""
    manifest = dict(bundle.manifest, **fields)
    (bundle.path / MANIFEST).write_text(json.dumps(manifest, indent=2, default=_json_default))
    return ModelBundle(bundle.path, manifest)


def load_bundle(path: Path) -> ModelBundle:
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.exists():
        raise BundleError(f"{path.name}: not a model bundle (no {MANIFEST})")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path.name}: {MANIFEST} is not valid JSON ({exc})") from exc
    for key in ("method", "id", "config", "weights_sha256"):
        if key not in manifest:
            raise BundleError(f"{path.name}: {MANIFEST} lacks {key!r}")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise BundleError(
            f"{path.name}: bundle format {manifest['format_version']} is newer than this Anomascope reads"
        )
    weights = path / manifest.get("weights", WEIGHTS)
    if not weights.exists():
        raise BundleError(f"{path.name}: weights file {weights.name} is missing")
    if hashlib.sha256(weights.read_bytes()).hexdigest() != manifest["weights_sha256"]:
        raise BundleError(f"{path.name}: weights do not match the manifest's hash (corrupt or replaced)")
    return ModelBundle(path, manifest)


def _json_default(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in a manifest")
