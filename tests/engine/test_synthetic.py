"""The DST Poisson solver, the five self-supervised tasks and the P-PII generator."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from anomascope.engine.methods.cddpm.config import SyntheticTaskConfig
from anomascope.engine.methods.cddpm.foreign import foreign_images
from anomascope.engine.methods.cddpm.model import corrupt
from anomascope.engine.methods.cddpm.tasks import TASK_NAMES, make_tasks
from anomascope.engine.methods.ppii.config import PpiiGeneratorConfig
from anomascope.engine.methods.ppii.synthetic import ppii_anomalies, rater_masks, smooth_bump
from anomascope.engine.synthetic import poisson_blend, solve_poisson
from anomascope.engine.synthetic.poisson import dst1, idst1
from anomascope.engine.synthetic.shapes import companion_generator


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


def test_bright_anomalies_brighten_the_image_inside_the_raters_masks():
    images = torch.full((4, 1, 48, 48), 0.3)
    config = PpiiGeneratorConfig(bright_fraction=1.0, bright_amplitude=(0.4, 0.6))
    sample = ppii_anomalies(images, torch.Generator().manual_seed(0), config)
    union = sample.masks.amax(dim=1).bool()
    change = sample.image - images
    assert change[~union].abs().max() == 0
    # Every patch is the image's own, brightened: brighter inside the masks, on average and at the peak (the
    # up-scaled gradients may undershoot a little where a circle cuts the bump off-centre).
    assert change.min() > -0.05
    for image_change, inside in zip(change, union, strict=True):
        assert image_change[inside].mean() > 0.02 and image_change.max() > 0.1
    torch.testing.assert_close(sample.label, change.abs())
    # A partner's patch of a flat batch changes nothing: the paper's generator leaves these images alone.
    flat = ppii_anomalies(images, torch.Generator().manual_seed(0), PpiiGeneratorConfig())
    assert flat.label.abs().max() < 1e-4


def test_a_negative_amplitude_darkens_as_a_pigmented_lesion_does():
    images = torch.full((4, 3, 48, 48), 0.7)
    config = PpiiGeneratorConfig(bright_fraction=1.0, bright_amplitude=(-0.5, -0.3))
    sample = ppii_anomalies(images, torch.Generator().manual_seed(0), config)
    union = sample.masks.amax(dim=1).bool()
    change = sample.image - images
    assert change.max() < 0.05
    for image_change, inside in zip(change, union, strict=True):
        assert image_change[inside.expand_as(image_change)].mean() < -0.02 and image_change.min() < -0.1
    torch.testing.assert_close(sample.label, change.abs().mean(dim=1, keepdim=True))


def test_a_tinted_bump_darkens_each_channel_by_its_share():
    images = torch.full((4, 3, 48, 48), 0.9)
    # Shallow and few, so that no pixel is clipped at 0, where the channels would stop being in proportion.
    plain = PpiiGeneratorConfig(max_anomalies=2, bright_fraction=1.0, bright_amplitude=(-0.2, -0.1))
    untinted = ppii_anomalies(images, torch.Generator().manual_seed(0), plain)
    whole = ppii_anomalies(images, torch.Generator().manual_seed(0), replace(plain, bright_tint=(1.0, 1.0, 1.0)))
    torch.testing.assert_close(whole.image, untinted.image)  # the same draws: a tint of ones is no tint
    tinted = ppii_anomalies(images, torch.Generator().manual_seed(0), replace(plain, bright_tint=(0.0, 0.5, 1.0)))
    change = tinted.image - images
    assert change[:, 0].abs().max() < 1e-6 and change[:, 2].min() < -0.05  # red untouched, blue darkened
    torch.testing.assert_close(change[:, 2], untinted.image[:, 2] - images[:, 2])
    torch.testing.assert_close(change[:, 1], change[:, 2] / 2, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="bright_tint has 2 entries for images of 3 channels"):
        ppii_anomalies(images, torch.Generator().manual_seed(0), replace(plain, bright_tint=(1.0, 0.5)))


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


def test_rater_masks_are_the_union_of_each_raters_circles():
    rng = np.random.default_rng(0)
    n, raters, height, width = 3, 4, 40, 36
    patches, circles = [], []
    for image in (0, 0, 2, 2, 2):  # image 1 has no patch
        ph, pw = int(rng.integers(4, 20)), int(rng.integers(4, 20))
        patches.append((image, int(rng.integers(1, height - ph)), int(rng.integers(1, width - pw)), ph, pw))
        for _ in range(raters):
            radius = rng.uniform(1, (min(ph, pw) - 1) / 2)
            circles.append((rng.uniform(radius, ph - 1 - radius), rng.uniform(radius, pw - 1 - radius), radius**2))
    masks = rater_masks(patches, circles, torch.zeros(n, 1, height, width), raters)
    expected = np.zeros((n, raters, 1, height, width), bool)
    rows, columns = np.mgrid[:height, :width]
    for index, (image, top, left, ph, pw) in enumerate(patches):
        in_patch = (rows >= top) & (rows < top + ph) & (columns >= left) & (columns < left + pw)
        for rater in range(raters):
            cy, cx, r2 = circles[index * raters + rater]
            expected[image, rater, 0] |= in_patch & ((rows - top - cy) ** 2 + (columns - left - cx) ** 2 <= r2)
    assert masks.dtype == torch.float32 and expected[2].any() and not expected[1].any()
    np.testing.assert_array_equal(masks.numpy().astype(bool), expected)
    assert not rater_masks([], [], torch.zeros(n, 1, height, width), raters).any()  # no patch, no circle


def test_companion_generator_is_reproducible_and_moves_on():
    def first_draws(generator: torch.Generator) -> list[float]:
        return torch.rand(4, generator=companion_generator(generator)).tolist()

    generator = torch.Generator().manual_seed(0)
    checkpoint = generator.get_state()
    one, two = first_draws(generator), first_draws(generator)
    assert one != two  # each call moves the device generator on
    restored = torch.Generator()
    restored.set_state(checkpoint)
    assert first_draws(restored) == one and first_draws(restored) == two  # a resumed run draws the same
    assert first_draws(torch.Generator().manual_seed(1)) != one


def fixed_parameters(_generator: torch.Generator) -> torch.Generator:
    return torch.Generator().manual_seed(123)


SYNTHETIC_MODULES = ("anomascope.engine.methods.ppii.synthetic", "anomascope.engine.methods.cddpm.tasks")


@pytest.mark.parametrize("name", ["ppii", *TASK_NAMES])
def test_every_shape_parameter_comes_from_the_parameter_generator(images, tasks, name, monkeypatch):
    # On a GPU the parameters come from a CPU companion; a draw that bypassed it would read the device
    # at every draw. With the parameter generator pinned, the given generator must not matter.
    for module in SYNTHETIC_MODULES:
        monkeypatch.setattr(f"{module}.parameter_generator", fixed_parameters)

    def generate(seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        if name == "ppii":
            return ppii_anomalies(images, generator, PpiiGeneratorConfig()).masks
        return torch.cat([t.flatten() for t in tasks[name](images, generator, SyntheticTaskConfig())])

    assert torch.equal(generate(0), generate(1))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_synthetic_anomalies_never_wait_for_the_gpu(images, tasks):
    # Run on a lent GPU by bench/device/throughput.sh: any host-device synchronisation raises.
    device = torch.device("cuda")
    on_gpu = images.to(device)
    config, folds = SyntheticTaskConfig(), tuple(TASK_NAMES)

    def generate(seed: int) -> list[torch.Tensor]:
        generator = torch.Generator(device).manual_seed(seed)
        generated = [ppii_anomalies(on_gpu, generator, PpiiGeneratorConfig()).masks]
        for name in TASK_NAMES:
            generated.extend(tasks[name](on_gpu, generator, config))
        return [*generated, corrupt(on_gpu, tasks, folds, 0.2, generator, config)]

    generate(0)  # copies the foreign pool to the GPU, once
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        first = generate(1)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(torch.equal(a, b) for a, b in zip(first, generate(1), strict=True))


def test_a_flat_topped_bump_stays_at_its_peak_then_falls_to_zero_at_its_edge():
    cpu = torch.device("cpu")
    peaked = smooth_bump(41, 41, cpu, torch.float32)
    flat_topped = smooth_bump(41, 41, cpu, torch.float32, (0.35, 0.7))
    side = torch.linspace(-1.0, 1.0, 41)
    radius = (side[:, None] ** 2 + side[None, :] ** 2).sqrt()
    assert flat_topped[radius <= 0.35].min() == 1.0 and peaked[radius <= 0.35].min() < 0.8
    assert flat_topped[radius >= 0.7].max() == 0.0 and peaked[radius >= 1.0].max() == 0.0
    # Between its radii, the raised cosine moved out and squeezed; (0, 1) is the peaked bump.
    fall = (radius > 0.35) & (radius < 0.7)
    torch.testing.assert_close(flat_topped[fall], (1 + torch.cos(math.pi * (radius[fall] - 0.35) / 0.35)) / 2)
    torch.testing.assert_close(peaked, (1 + torch.cos(math.pi * radius.clamp(max=1.0))) / 2)
    with pytest.raises(ValueError, match=r"bright_profile is \[0.7, 0.35\]; its radii must rise"):
        smooth_bump(41, 41, cpu, torch.float32, (0.7, 0.35))


def test_a_flat_topped_bump_gives_a_flatter_label_than_a_peaked_one():
    images = torch.full((4, 1, 48, 48), 0.3)
    config = PpiiGeneratorConfig(bright_fraction=1.0, bright_amplitude=(0.4, 0.6), max_anomalies=1)
    labels = {}
    for profile in ((0.0, 1.0), (0.5, 1.0)):
        sample = ppii_anomalies(images, torch.Generator().manual_seed(0), replace(config, bright_profile=profile))
        inside = sample.masks.amax(dim=1).bool()
        labels[profile] = [label[mask] for label, mask in zip(sample.label, inside, strict=True)]
    # The same draws: inside the raters' circles the flat top's label stays nearer its peak, and the peak is
    # about as high (the blend keeps the change inside each circle, up-scaled).
    for peaked, flat in zip(labels[(0.0, 1.0)], labels[(0.5, 1.0)], strict=True):
        assert flat.mean() / flat.max() > peaked.mean() / peaked.max() + 0.15
        assert 0.7 < flat.max() / peaked.max() < 1.3
