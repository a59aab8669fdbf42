"""Poisson image editing solved with the type-I discrete sine transform (batched torch, any device).

The discrete Poisson equation lap(f) = div(v) on the interior of a rectangle with Dirichlet values on
its border is diagonalised by the 2-D DST-I, so one solve is two forward and two inverse transforms
(the approach of PIE-torch, which the P-PII paper builds on) instead of a sparse linear solve.
"""

from __future__ import annotations

import math

import torch


def dst1(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Unnormalised DST-I along `dim`: X_k = sum_j x_j sin(pi (j+1)(k+1) / (n+1)), via one FFT of the
    odd extension [0, x, 0, -reversed(x)]."""
    x = x.movedim(dim, -1)
    n = x.shape[-1]
    zero = torch.zeros_like(x[..., :1])
    extended = torch.cat([zero, x, zero, -x.flip(-1)], dim=-1)
    if extended.dtype not in (torch.float32, torch.float64):
        extended = extended.float()  # the FFT needs single or double precision
    transformed = -torch.fft.rfft(extended, dim=-1).imag[..., 1 : n + 1] / 2.0
    return transformed.to(x.dtype).movedim(-1, dim)


def idst1(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Inverse of dst1 (DST-I is its own inverse up to 2 / (n + 1))."""
    return dst1(x, dim) * (2.0 / (x.shape[dim] + 1))


def solve_poisson(divergence: torch.Tensor, boundary: torch.Tensor) -> torch.Tensor:
    """f on (..., H, W) with lap(f) = divergence in the interior and f = boundary on the outer ring.

    lap is the 5-point Laplacian; `divergence` is read on the interior only and `boundary` on the
    outer ring only. Batched over all leading dimensions.
    """
    height, width = boundary.shape[-2:]
    if height < 3 or width < 3:
        return boundary.clone()
    rhs = divergence[..., 1:-1, 1:-1].clone()
    # Known border values move to the right-hand side of the interior equations next to them.
    rhs[..., 0, :] -= boundary[..., 0, 1:-1]
    rhs[..., -1, :] -= boundary[..., -1, 1:-1]
    rhs[..., :, 0] -= boundary[..., 1:-1, 0]
    rhs[..., :, -1] -= boundary[..., 1:-1, -1]
    m, n = height - 2, width - 2
    rows = torch.arange(1, m + 1, device=rhs.device, dtype=torch.float64)
    cols = torch.arange(1, n + 1, device=rhs.device, dtype=torch.float64)
    eigen = (2 * torch.cos(math.pi * rows / (m + 1)) - 2)[:, None] + (2 * torch.cos(math.pi * cols / (n + 1)) - 2)[None]
    spectrum = dst1(dst1(rhs, -1), -2) / eigen.to(rhs.dtype)
    interior = idst1(idst1(spectrum, -1), -2)
    result = boundary.clone()
    result[..., 1:-1, 1:-1] = interior
    return result


def forward_gradients(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(gy, gx): forward differences, shaped (..., H-1, W) and (..., H, W-1)."""
    return image[..., 1:, :] - image[..., :-1, :], image[..., :, 1:] - image[..., :, :-1]


def divergence_of(gy: torch.Tensor, gx: torch.Tensor) -> torch.Tensor:
    """Backward-difference divergence of a forward-difference field, on the (..., H, W) grid (the
    outer ring is left at zero: solve_poisson never reads it)."""
    height, width = gy.shape[-2] + 1, gx.shape[-1] + 1
    div = torch.zeros(*gy.shape[:-2], height, width, dtype=gy.dtype, device=gy.device)
    div[..., 1:-1, :] += gy[..., 1:, :] - gy[..., :-1, :]
    div[..., :, 1:-1] += gx[..., :, 1:] - gx[..., :, :-1]
    return div


def mixed_field(
    target: torch.Tensor,
    source: torch.Tensor,
    mask: torch.Tensor,
    source_weight: torch.Tensor | float,
    gradient_scale: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Guidance field of Poisson image interpolation (PII Eq. 1, with P-PII's gradient up-scaling).

    Inside the mask each pixel pair takes whichever of (1 - a) grad(target) and a * s * grad(source) is
    larger in magnitude (mixed gradients; a = source_weight, s = gradient_scale); outside it keeps the
    target's own gradients. A pair is inside when either of its pixels is.
    """
    weight = torch.as_tensor(source_weight, dtype=target.dtype, device=target.device)
    if weight.dim():
        weight = weight.expand_as(target)
    fields = []
    for t_grad, s_grad, axis in zip(forward_gradients(target), forward_gradients(source), (-2, -1), strict=True):
        pair_mask = _pair_max(mask.to(target.dtype), axis) > 0
        pair_weight = _pair_max(weight, axis) if weight.dim() else weight
        kept = (1 - pair_weight) * t_grad
        inserted = pair_weight * gradient_scale * s_grad
        mixed = torch.where(kept.abs() > inserted.abs(), kept, inserted)
        fields.append(torch.where(pair_mask.expand_as(t_grad), mixed, t_grad))
    return fields[0], fields[1]


def poisson_blend(
    target: torch.Tensor,
    source: torch.Tensor,
    mask: torch.Tensor,
    source_weight: torch.Tensor | float = 1.0,
    gradient_scale: float = 1.0,
) -> torch.Tensor:
    """Blend `source` into `target` where `mask` is set, by Poisson editing with mixed gradients.

    target, source: (..., C, H, W); mask: broadcastable (..., 1, H, W). Pixels outside the mask keep
    the target exactly. The image border is the Dirichlet boundary, so masks should not touch it.
    """
    gy, gx = mixed_field(target, source, mask, source_weight, gradient_scale)
    solved = solve_poisson(divergence_of(gy, gx), target)
    return torch.where(mask.bool().expand_as(target), solved, target)


def _pair_max(values: torch.Tensor, axis: int) -> torch.Tensor:
    """Per forward-difference pair along `axis`: the larger of its two pixels' values."""
    if axis == -2:
        return torch.maximum(values[..., 1:, :], values[..., :-1, :])
    return torch.maximum(values[..., :, 1:], values[..., :, :-1])
