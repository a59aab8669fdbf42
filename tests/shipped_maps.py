"""Fingerprints of what the shipped bundles make of one sample each, so that a change to the engine
that alters a shipped model's maps is caught. Record them again only when a bundle is retrained:
`.venv/bin/python -m tests.shipped_maps` (one thread: the CPU kernels' reduction order depends on
the thread count)."""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path

import numpy as np
import torch

from anomascope.engine.bundle import load_bundle
from anomascope.engine.inference import CaseResult, score_case
from anomascope.engine.io import load_case
from anomascope.engine.methods import make_predictor

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "tests" / "data" / "shipped_maps.json"
SAMPLES = {
    "chest-xray-dia": "chest-xray.png",
    "lgg-cddpm": "anatomical.nii",
    "lgg-flair-zscore": "anatomical.nii",
    "lgg-median-distance": "anatomical.nii",
    "lgg-ppii": "anatomical.nii",
}  # the others: skin photos
DEFAULT_SAMPLE = "ISIC_0024311.jpg"
OUTPUTS = ("heatmap", "restoration", "uncertainty")


def shipped_bundles() -> list[Path]:
    return sorted(p for p in (ROOT / "assets" / "models").iterdir() if (p / "manifest.json").exists())


def sample_of(bundle: Path) -> Path:
    return ROOT / "assets" / "samples" / SAMPLES.get(bundle.name, DEFAULT_SAMPLE)


def score_readouts(bundle_path: Path) -> dict[str, CaseResult]:
    """Each read-out of the bundle on its sample, in float32 on the CPU."""
    bundle = load_bundle(bundle_path)
    case = load_case(sample_of(bundle_path))
    return {
        readout: score_case(make_predictor(bundle, torch.device("cpu"), readout, "fp32"), case)
        for readout in bundle.manifest.get("readouts", [bundle.method])
    }


def fingerprint(result: CaseResult) -> dict:
    """The SHA-256 of each output's float32 bytes, and float64 sums that say how far apart two
    results are when the bytes differ."""
    record: dict = {"scores": result.slice_scores.tolist()}
    for name in OUTPUTS:
        array = getattr(result, name)
        record[name] = (
            None
            if array is None
            else {
                "sha256": hashlib.sha256(np.ascontiguousarray(array, dtype=np.float32).tobytes()).hexdigest(),
                "shape": list(array.shape),
                "sum": float(np.sum(array, dtype=np.float64)),
                "sum_of_squares": float(np.sum(np.square(array, dtype=np.float64))),
            }
        )
    return record


def cpu_model() -> str:
    """The processor's model: two AVX512 machines of different models can run the same torch build's kernels,
    and numpy's, to different last bits (an AMD EPYC did, against the machine that first recorded the maps)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor()


def record() -> dict:
    torch.set_num_threads(1)
    fingerprints = {
        f"{path.name}:{readout}": fingerprint(result)
        for path in shipped_bundles()
        for readout, result in score_readouts(path).items()
    }
    return {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_model": cpu_model(),
        "torch": torch.__version__,
        "maps": fingerprints,
    }


if __name__ == "__main__":
    RECORD.parent.mkdir(exist_ok=True)
    RECORD.write_text(json.dumps(record(), indent=1) + "\n")
    print(f"wrote {RECORD}")
