"""Geometric augmentation of training batches: each transform moves a pixel where its geometry says."""

from __future__ import annotations

import math

import pytest
import torch

from anomascope.engine.augment import augmented, check_augment
from anomascope.engine.config import AugmentConfig

SIZE = 65  # odd: the grid's centre is a pixel centre, (32, 32)
CENTRE = SIZE // 2


def dot(row: int, col: int, n: int = 1) -> torch.Tensor:
    image = torch.zeros(n, 1, SIZE, SIZE)
    image[:, 0, row, col] = 1.0
    return image


def centroid(image: torch.Tensor) -> tuple[float, float]:
    rows, cols = torch.meshgrid(torch.arange(float(SIZE)), torch.arange(float(SIZE)), indexing="ij")
    weights = image[0, 0].clamp(min=0)
    return float((rows * weights).sum() / weights.sum()), float((cols * weights).sum() / weights.sum())


def test_the_defaults_change_nothing_and_draw_nothing():
    images, generator = torch.rand(3, 2, 16, 16), torch.Generator().manual_seed(0)
    state = generator.get_state()
    assert augmented(images, AugmentConfig(), generator) is images
    assert torch.equal(generator.get_state(), state)  # a recipe without augmentation trains as before


def test_a_zoom_moves_a_pixel_twice_as_far_from_the_centre():
    out = augmented(dot(CENTRE, CENTRE + 8), AugmentConfig(scale=(2.0, 2.0)), torch.Generator().manual_seed(0))
    row, col = centroid(out)
    assert row == pytest.approx(CENTRE, abs=1e-4) and col == pytest.approx(CENTRE + 16, abs=1e-4)


def test_a_rotation_keeps_a_pixel_s_distance_from_the_centre_and_turns_it_within_the_angle():
    config, angles = AugmentConfig(rotation_degrees=10.0), []
    for seed in range(8):
        row, col = centroid(augmented(dot(CENTRE, CENTRE + 20), config, torch.Generator().manual_seed(seed)))
        angles.append(math.degrees(math.atan2(row - CENTRE, col - CENTRE)))
        assert math.hypot(row - CENTRE, col - CENTRE) == pytest.approx(20, abs=0.3)
    assert max(abs(a) for a in angles) <= 10.5 and max(angles) - min(angles) > 4  # turned, each its own way


def test_a_rotation_of_an_oblong_image_keeps_distances_in_pixels():
    height, width = 33, 65  # the grid spans [-1, 1] across both sides: a rotation there would shear the pixels
    image = torch.zeros(1, 1, height, width)
    image[0, 0, 16, 32 + 12] = 1.0
    rows, cols = torch.meshgrid(torch.arange(float(height)), torch.arange(float(width)), indexing="ij")
    near = torch.hypot(rows - 16, cols - 32) < 15  # the corners mirror the dot back in at some angles
    for seed in range(4):
        out = augmented(image, AugmentConfig(rotation_degrees=60.0), torch.Generator().manual_seed(seed))[0, 0]
        out = out * near
        row, col = float((rows * out).sum() / out.sum()), float((cols * out).sum() / out.sum())
        assert math.hypot(row - 16, col - 32) == pytest.approx(12, abs=0.3)


def test_autocast_does_not_coarsen_the_sampling_grid():
    images, config = torch.rand(2, 1, 256, 256), AugmentConfig(scale=(0.9, 1.1), rotation_degrees=10.0)
    plain = augmented(images, config, torch.Generator().manual_seed(0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = augmented(images, config, torch.Generator().manual_seed(0))
    assert torch.equal(mixed, plain)


def test_each_image_gets_its_own_draw_and_a_seed_repeats_it():
    images = torch.rand(1, 3, 32, 32).repeat(4, 1, 1, 1)
    config = AugmentConfig(scale=(0.85, 1.15), rotation_degrees=10.0, elastic_sd=0.015)
    first = augmented(images, config, torch.Generator().manual_seed(3))
    assert torch.equal(first, augmented(images, config, torch.Generator().manual_seed(3)))
    assert all(not torch.allclose(first[0], first[i]) for i in range(1, 4))


def test_an_elastic_deformation_keeps_a_flat_image_flat_and_moves_a_ramp_by_about_its_sd():
    config = AugmentConfig(elastic_sd=0.02)
    flat = torch.full((2, 1, SIZE, SIZE), 0.3)
    assert torch.allclose(augmented(flat, config, torch.Generator().manual_seed(0)), flat, atol=1e-6)
    ramp = torch.linspace(0, SIZE - 1, SIZE).expand(1, 1, SIZE, SIZE).repeat(64, 1, 1, 1)  # value = column
    moved = augmented(ramp, config, torch.Generator().manual_seed(0)) - ramp
    inner = moved[..., 8:-8, 8:-8]  # away from the mirrored edge
    # sd 2 % of the side at the coarse grid's points, a little less between them (bicubic smoothing)
    assert 0.6 * 0.02 * SIZE < float(inner.std()) <= 0.02 * SIZE


@pytest.mark.parametrize(
    "config, message",
    [
        (AugmentConfig(scale=(1.2, 0.8)), r"augment.scale is \[1.2, 0.8\]"),
        (AugmentConfig(scale=(0.0, 1.0)), r"augment.scale is \[0.0, 1.0\]"),
        (AugmentConfig(rotation_degrees=-5.0), "augment.rotation_degrees is -5.0"),
        (AugmentConfig(scale=(0.9, 1.0, 1.1)), r"augment.scale is \[0.9, 1.0, 1.1\]"),
        (AugmentConfig(elastic_sd=0.01, elastic_grid=1), "augment.elastic_grid 1"),
        (AugmentConfig(elastic_sd=float("nan")), "augment.elastic_sd is nan"),
    ],
)
def test_a_config_out_of_range_is_refused_with_its_key(config, message):
    with pytest.raises(ValueError, match=message):
        check_augment(config)
