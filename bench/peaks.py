"""Named peak FLOP/s of the GPUs that training throughput is set against (no torch here: the benchmark
table reads it too)."""

from __future__ import annotations

# Dense BF16 tensor-core peaks from NVIDIA's datasheets (SXM parts), in FLOP/s: what training runs in on
# CUDA (the config's mixed_precision, bf16 by default).
GPU_PEAKS = {
    "H200": ("NVIDIA H200 SXM dense BF16 tensor-core peak (datasheet)", 989.4e12),
    "H100": ("NVIDIA H100 SXM dense BF16 tensor-core peak (datasheet)", 989.4e12),
    "A100": ("NVIDIA A100 dense BF16 tensor-core peak (datasheet)", 312e12),
}


def gpu_peak(name: str) -> tuple[str, float | None]:
    """The named peak of the GPU called `name` (as torch reports it), or (name, None) when not known."""
    return next(((what, peak) for key, (what, peak) in GPU_PEAKS.items() if key in name), (name, None))
