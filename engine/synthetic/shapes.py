"""Random anomaly shapes on a pixel grid, drawn from a torch.Generator so every draw is reproducible."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import torch


def parameter_generator(generator: torch.Generator) -> torch.Generator:
    """The generator to draw shape parameters from: scalars that Python reads, one at a time.

    On the CPU that is `generator` itself. Reading a scalar drawn on a GPU makes the host wait for every
    queued kernel, at each of the hundreds of draws of a batch, so there they come from a CPU generator
    that `companion_generator` derives from the device generator without reading the device.
    """
    return generator if generator.device.type == "cpu" else companion_generator(generator)


def companion_generator(generator: torch.Generator) -> torch.Generator:
    """A CPU generator seeded from `generator`'s state, which is then moved on, so that the next call
    gets another stream. A CUDA generator's state (seed and offset) lives on the host: nothing waits,
    and a run resumed from a checkpoint of `generator` draws the same parameters again."""
    digest = hashlib.blake2b(generator.get_state().numpy().tobytes(), digest_size=8).digest()
    companion = torch.Generator(device="cpu").manual_seed(int.from_bytes(digest, "little") >> 1)
    # One draw on the generator's own device: queued like any kernel, it moves the state on.
    torch.empty(1, device=generator.device).uniform_(generator=generator)
    return companion


def uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator, device=generator.device))


def randint(generator: torch.Generator, low: int, high: int) -> int:
    """An integer in [low, high] (both included)."""
    return int(torch.randint(low, high + 1, (), generator=generator, device=generator.device))


def normal(generator: torch.Generator, mean: float, std: float) -> float:
    return mean + std * float(torch.randn((), generator=generator, device=generator.device))


def pixel_grid(height: int, width: int, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, columns) coordinates of every pixel, float32."""
    rows, columns = torch.meshgrid(
        torch.arange(height, device=device, dtype=torch.float32),
        torch.arange(width, device=device, dtype=torch.float32),
        indexing="ij",
    )
    return rows, columns


@dataclass
class Ellipse:
    """Centre (row, col), semi-axes (a along its own x, b along y) and rotation, in pixels/radians."""

    cy: float
    cx: float
    a: float
    b: float
    angle: float

    def normalised_radius(self, height: int, width: int, device: torch.device | None = None) -> torch.Tensor:
        """(H, W): 1 on the ellipse's outline, 0 at its centre (the elliptical distance)."""
        yy, xx = pixel_grid(height, width, device)
        dy, dx = yy - self.cy, xx - self.cx
        cos, sin = math.cos(self.angle), math.sin(self.angle)
        u, v = dx * cos + dy * sin, -dx * sin + dy * cos
        return torch.sqrt((u / self.a) ** 2 + (v / self.b) ** 2)


def random_ellipse(generator: torch.Generator, height: int, width: int, min_size: float, max_size: float) -> Ellipse:
    """An ellipse with diameters in [min_size, max_size] x the shorter side, lying wholly inside the
    image with a one-pixel margin (the border is the Poisson boundary)."""
    side = min(height, width)
    a = max(1.5, uniform(generator, min_size, max_size) * side / 2)
    b = max(1.5, uniform(generator, min_size, max_size) * side / 2)
    reach = max(a, b)
    cy = uniform(generator, min(reach + 1, height / 2), max(height - reach - 2, height / 2))
    cx = uniform(generator, min(reach + 1, width / 2), max(width - reach - 2, width / 2))
    return Ellipse(cy, cx, a, b, uniform(generator, 0.0, math.pi))


def wobbly_mask(
    generator: torch.Generator,
    ellipse: Ellipse,
    height: int,
    width: int,
    distortion: float,
    device: torch.device | None = None,
) -> torch.Tensor:
    """(H, W) bool: the ellipse with its outline pushed in and out by a few random low-frequency
    harmonics (organic shapes rather than perfect ellipses)."""
    radius = ellipse.normalised_radius(height, width, device)
    yy, xx = pixel_grid(height, width, device)
    theta = torch.atan2(yy - ellipse.cy, xx - ellipse.cx)
    outline = torch.ones_like(radius)
    for harmonic in (2, 3, 4):
        amplitude = distortion * uniform(generator, -1.0, 1.0) / harmonic
        outline = outline + amplitude * torch.cos(harmonic * theta + uniform(generator, 0.0, 2 * math.pi))
    mask = radius <= outline.clamp(min=0.3)
    mask[0, :] = mask[-1, :] = False
    mask[:, 0] = mask[:, -1] = False
    return mask
