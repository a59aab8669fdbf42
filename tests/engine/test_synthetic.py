"""The DST Poisson solver, the five self-supervised tasks and the P-PII generator."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from anomascope.engine.config import PpiiGeneratorConfig, SyntheticTaskConfig
from anomascope.engine.synthetic import (
    TASK_NAMES,
    foreign_images,
    make_tasks,
    poisson_blend,
    ppii_anomalies,
    solve_poisson,
)
from anomascope.engine.synthetic.poisson import dst1, idst1


def grid(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.meshgrid(
        torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64), indexing="ij"
    )


def sparse_poisson(divergence: np.ndarray, boundary: np.ndarray) -> np.ndarray:
    """The same Dirichlet problem assembled as a sparse 5-point Laplacian and solved directly."""
    m, n = boundary.shape[0] - 2, boundary.shape[1] - 2

    def second(k: int):
        return sp.diags([np.ones(k - 1), -2 * np.ones(k), np.ones(k - 1)], [-1, 0, 1])

    laplacian = sp.kron(sp.eye(m), second(n)) + sp.kron(second(m), sp.eye(n))
    rhs = divergence[1:-1, 1:-1].copy()
    rhs[0, :] -= boundary[0, 1:-1]
    rhs[-1, :] -= boundary[-1, 1:-1]
    rhs[:, 0] -= boundary[1:-1, 0]
    rhs[:, -1] -= boundary[1:-1, -1]
    interior = spla.spsolve(laplacian.tocsc(), rhs.ravel()).reshape(m, n)
    out = boundary.copy()
    out[1:-1, 1:-1] = interior
    return out


def test_dst_is_the_sine_transform_and_inverts():
    x = torch.randn(3, 7, dtype=torch.float64)
    n = x.shape[-1]
    j = torch.arange(n, dtype=torch.float64)
    matrix = torch.sin(torch.pi * (j[:, None] + 1) * (j[None] + 1) / (n + 1))
    torch.testing.assert_close(dst1(x), x @ matrix)
    torch.testing.assert_close(idst1(dst1(x)), x)


def test_poisson_solver_recovers_an_analytic_solution():
    # f = x^2 + y^2 + xy/2 has a 5-point Laplacian of exactly 4 everywhere.
    yy, xx = grid(13, 17)
    f = xx**2 + yy**2 + 0.5 * xx * yy
    solved = solve_poisson(torch.full_like(f, 4.0), f)
    torch.testing.assert_close(solved, f, rtol=0, atol=1e-9)


def test_poisson_solver_matches_a_direct_sparse_solve():
    rng = np.random.default_rng(0)
    divergence, boundary = rng.normal(size=(11, 14)), rng.random((11, 14))
    solved = solve_poisson(torch.from_numpy(divergence), torch.from_numpy(boundary)).numpy()
    np.testing.assert_allclose(solved, sparse_poisson(divergence, boundary), atol=1e-9)


def test_poisson_solver_is_batched():
    rng = np.random.default_rng(1)
    divergence, boundary = rng.normal(size=(2, 3, 9, 10)), rng.random((2, 3, 9, 10))
    batched = solve_poisson(torch.from_numpy(divergence), torch.from_numpy(boundary)).numpy()
    np.testing.assert_allclose(batched[1, 2], sparse_poisson(divergence[1, 2], boundary[1, 2]), atol=1e-9)


def test_blend_keeps_the_target_outside_and_takes_the_source_texture_inside():
    yy, xx = grid(32, 32)
    target = torch.full((1, 1, 32, 32), 0.2)
    # A bump that has faded to ~0 at the mask's edge: its gradients are larger than the flat target's,
    # so mixed blending takes them and the bump appears on top of the target's level.
    bump = 0.3 * torch.exp(-((yy - 16) ** 2 + (xx - 16) ** 2) / (2 * 3.0**2))
    source = (0.6 + bump)[None, None].float()
    mask = torch.zeros(1, 1, 32, 32, dtype=torch.bool)
    mask[..., 4:28, 4:28] = True
    blended = poisson_blend(target, source, mask)
    assert torch.equal(blended[~mask.expand_as(blended)], target[~mask.expand_as(target)])
    assert blended[0, 0, 16, 16].item() == pytest.approx(0.2 + 0.3, abs=0.02)
    assert blended[0, 0, 5, 5].item() == pytest.approx(0.2, abs=0.02)  # the source's own level (0.6) is not copied


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    rng = np.random.default_rng(0)
    return torch.from_numpy(rng.random((6, 3, 32, 32))).float()


@pytest.fixture(scope="module")
def tasks():
    return make_tasks(foreign_images(32))


@pytest.mark.parametrize("name", TASK_NAMES)
def test_each_task_changes_images_only_inside_its_label(images, tasks, name):
    corrupted, labels = tasks[name](images, torch.Generator().manual_seed(0), SyntheticTaskConfig())
    assert corrupted.shape == images.shape and labels.shape == (6, 1, 32, 32)
    assert 0 <= corrupted.min() and corrupted.max() <= 1
    assert set(labels.unique().tolist()) <= {0.0, 1.0}
    changed = (corrupted - images).abs().amax(dim=1, keepdim=True)
    assert changed[labels == 0].max() < 1e-4
    assert (labels.flatten(1).sum(1) > 0).all()  # every image has at least one anomaly
    assert changed[labels == 1].mean() > 0.01


@pytest.mark.parametrize("name", TASK_NAMES)
def test_tasks_are_reproducible_per_seed(images, tasks, name):
    first = tasks[name](images, torch.Generator().manual_seed(3), SyntheticTaskConfig())
    second = tasks[name](images, torch.Generator().manual_seed(3), SyntheticTaskConfig())
    other = tasks[name](images, torch.Generator().manual_seed(4), SyntheticTaskConfig())
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert not torch.equal(first[1], other[1])


def test_foreign_images_ship_with_the_package():
    pool = foreign_images(16)
    assert pool.shape[1:] == (3, 16, 16) and len(pool) >= 10
    assert 0 <= pool.min() and pool.max() <= 1


def test_ppii_generator_invariants(images):
    config = PpiiGeneratorConfig()
    sample = ppii_anomalies(images, torch.Generator().manual_seed(0), config)
    assert sample.image.shape == images.shape and sample.masks.shape == (6, config.raters, 1, 32, 32)
    union = sample.masks.amax(dim=1)
    assert sample.label[union == 0].abs().max() == 0  # labels are zero outside every rater's mask
    assert sample.variance[union == 0].abs().max() == 0
    assert (sample.label[union == 1] > 0).float().mean() > 0.5
    torch.testing.assert_close(sample.label, (images - sample.image).abs().mean(dim=1, keepdim=True))
    # The raters disagree on the outline: the variance is non-zero somewhere in every image.
    assert (sample.variance.flatten(1).amax(1) > 0).all()


def test_ppii_counts_and_circles_stay_within_bounds():
    config = PpiiGeneratorConfig(raters=3, min_anomalies=1, max_anomalies=10)
    # A flat image with one bright pixel per anomaly is hard to count; count patches through alpha
    # draws instead: each anomaly paints one non-empty connected set of rater masks.
    from scipy import ndimage

    counts = []
    for seed in range(20):
        images = torch.zeros(1, 1, 64, 64)
        sample = ppii_anomalies(images, torch.Generator().manual_seed(seed), config)
        for rater in range(config.raters):
            mask = sample.masks[0, rater, 0].numpy() > 0
            assert not mask[0].any() and not mask[-1].any() and not mask[:, 0].any() and not mask[:, -1].any()
            counts.append(ndimage.label(mask)[1])
    # Overlapping circles merge, so components can only be fewer than the anomalies drawn.
    assert 1 <= min(counts) and max(counts) <= 10


def test_ppii_generator_is_reproducible_per_seed(images):
    config = PpiiGeneratorConfig()
    a = ppii_anomalies(images, torch.Generator().manual_seed(7), config)
    b = ppii_anomalies(images, torch.Generator().manual_seed(7), config)
    c = ppii_anomalies(images, torch.Generator().manual_seed(8), config)
    assert torch.equal(a.image, b.image) and torch.equal(a.label, b.label) and torch.equal(a.variance, b.variance)
    assert not torch.equal(a.label, c.label)
