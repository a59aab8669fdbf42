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


def test_a_rotation_keeps_a_pixel_s_distance_from_the_centre_within_the_angle_drawn():
    config = AugmentConfig(rotation_degrees=10.0)
    for seed in range(5):
        out = augmented(dot(CENTRE, CENTRE + 20), config, torch.Generator().manual_seed(seed))
        row, col = centroid(out)
        radius, angle = math.hypot(row - CENTRE, col - CENTRE), math.degrees(math.atan2(row - CENTRE, col - CENTRE))
        assert radius == pytest.approx(20, abs=0.3) and abs(angle) <= 10.0 + 0.5


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
    assert float(inner.std()) == pytest.approx(0.02 * SIZE, rel=0.35)  # sd in pixels: 2 % of the side


@pytest.mark.parametrize(
    "config, message",
    [
        (AugmentConfig(scale=(1.2, 0.8)), r"augment.scale is \[1.2, 0.8\]"),
        (AugmentConfig(scale=(0.0, 1.0)), r"augment.scale is \[0.0, 1.0\]"),
        (AugmentConfig(rotation_degrees=-5.0), "augment.rotation_degrees is -5.0"),
        (AugmentConfig(elastic_sd=0.01, elastic_grid=1), "augment.elastic_grid 1"),
    ],
)
def test_a_config_out_of_range_is_refused_with_its_key(config, message):
    with pytest.raises(ValueError, match=message):
        check_augment(config)
