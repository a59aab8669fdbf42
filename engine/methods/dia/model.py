"""DIA, "Dissolving is amplifying" (Shi et al.): contrastive image-level detection in which images
dissolved by a trained denoiser are extra negatives, so the encoder must attend to fine detail.

Shifting transformations (rotations or jigsaw) define K classes; two augmentation branches give the
positive pairs; the dissolving branch adds negatives; a shift classifier is trained alongside. Scores
follow CSI: nearest training feature's cosine similarity times the feature norm, plus the shift
classifier's logit, each balanced on the training set and summed over shifts.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ...bundle import ModelBundle
from ...config import from_dict
from ...nets.denoiser import build_denoiser
from ...preprocess import from_model_range
from ...schedules import VPSchedule
from ..base import AnomalyResult, Predictor
from ..denoiser.config import DenoiserMethodConfig
from .config import DiaConfig, DiaMethodConfig
from .net import ContrastiveEncoder

# The jigsaw ("perm") shifts: which quadrant goes where, quadrants numbered row by row.
JIGSAW = ((0, 1, 2, 3), (1, 0, 3, 2), (2, 3, 0, 1), (3, 2, 1, 0))


def shift_images(x: torch.Tensor, k: int, kind: str) -> torch.Tensor:
    """Shifting transformation S_k: rotation by k x 90 degrees, or the k-th jigsaw permutation."""
    if kind == "rotation":
        return torch.rot90(x, k, dims=(-2, -1))
    if kind == "perm":
        h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
        x = x[..., :h, :w]
        quadrants = [
            x[..., : h // 2, : w // 2],
            x[..., : h // 2, w // 2 :],
            x[..., h // 2 :, : w // 2],
            x[..., h // 2 :, w // 2 :],
        ]
        q = [quadrants[i] for i in JIGSAW[k]]
        return torch.cat([torch.cat(q[:2], dim=-1), torch.cat(q[2:], dim=-1)], dim=-2)
    raise ValueError(f"unknown shift {kind!r}; use rotation or perm")


class Dissolver(torch.nn.Module):
    """Dissolving transformation D_t (Eq. 4): one reverse step from x_t = x straight to the x0 estimate,
    computed at `size` x `size` and resized back."""

    def __init__(self, denoiser: torch.nn.Module, schedule: VPSchedule, size: int):
        super().__init__()
        self.denoiser, self.schedule, self.size = denoiser, schedule, size

    @torch.no_grad()
    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        small = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        abar = self.schedule.alphas_cumprod.to(x.device)[t].to(x.dtype).view(-1, 1, 1, 1)
        eps = self.denoiser(small, t).sample
        x0 = (small - (1 - abar).sqrt() * eps) / abar.sqrt()
        return F.interpolate(x0.clamp(-1, 1), size=x.shape[-2:], mode="bilinear", align_corners=False)


def load_dissolver(manifest: dict, state: dict, size: int, device: torch.device) -> Dissolver:
    config = from_dict(DenoiserMethodConfig, manifest["config"])
    model = build_denoiser(config.net, config.preprocess.channels, config.preprocess.image_size)
    model.load_state_dict(state)
    return Dissolver(model.to(device).eval(), VPSchedule(config.schedule), size)


def augment(x: torch.Tensor, config: DiaConfig, generator: torch.Generator) -> torch.Tensor:
    """Non-shifting transformations T on [-1, 1] images: random resized crop, colour jitter, grayscale."""
    n, c = x.shape[:2]

    def draw(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator, device=generator.device).to(x.device)

    area = config.crop_scale[0] + (config.crop_scale[1] - config.crop_scale[0]) * draw(n)
    ratio = torch.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * draw(n))
    width, height = (area * ratio).sqrt().clamp(max=1), (area / ratio).sqrt().clamp(max=1)
    cx, cy = (1 - width) * (2 * draw(n) - 1), (1 - height) * (2 * draw(n) - 1)
    theta = torch.zeros(n, 2, 3, device=x.device)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = width, cx, height, cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    y = (F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False) + 1) / 2
    jittered = _colour_jitter(y, config.jitter, draw)
    y = torch.where((draw(n) < config.jitter_probability).view(-1, 1, 1, 1), jittered, y)
    if c == 3:
        grey = _grey(y).expand_as(y)
        y = torch.where((draw(n) < config.grayscale_probability).view(-1, 1, 1, 1), grey, y)
    return y.clamp(0, 1) * 2 - 1


def _grey(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] != 3:
        return x
    return 0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


def _colour_jitter(x: torch.Tensor, strengths, draw) -> torch.Tensor:
    brightness, contrast, saturation, hue = strengths
    n = x.shape[0]

    def factor(s: float) -> torch.Tensor:
        return (1 - s + 2 * s * draw(n)).view(-1, 1, 1, 1)

    x = x * factor(brightness)
    mean = _grey(x).mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * factor(contrast) + mean
    if x.shape[1] == 3:
        grey = _grey(x)
        x = grey + (x - grey) * factor(saturation)
        x = _rotate_hue(x, (2 * draw(n) - 1) * hue * 2 * math.pi)
    return x.clamp(0, 1)


def _rotate_hue(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Hue rotation: turn the chroma (I, Q) of YIQ by `angle` radians per image."""
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], device=x.device)
    yiq = torch.einsum("ij,njhw->nihw", to_yiq, x)
    cos, sin = angle.cos().view(-1, 1, 1), angle.sin().view(-1, 1, 1)
    i, q = yiq[:, 1] * cos - yiq[:, 2] * sin, yiq[:, 1] * sin + yiq[:, 2] * cos
    rotated = torch.stack([yiq[:, 0], i, q], dim=1)
    return torch.einsum("ij,njhw->nihw", torch.linalg.inv(to_yiq), rotated)


def pair_layout(batch: int, shifts: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(positive, negative) masks over the 3BK x 3BK similarity matrix (Fig. 3).

    Views are ordered branch-major: index = branch * K * B + k * B + b, branches O, O' and the dissolved
    A. Positives: O_k(x_b) with O'_k(x_b) and back. Anchors are the O and O' views; every other view
    in their row is a negative, the dissolved ones included (the paper's new negatives). The dissolved
    views anchor nothing (their rows are excluded), and nothing pairs with itself.
    """
    n = batch * shifts
    index = torch.arange(3 * n)
    branch, within = index // n, index % n
    same_view = within[:, None] == within[None]
    anchor = (branch < 2)[:, None]
    positive = same_view & anchor & (branch[None] < 2) & (branch[:, None] != branch[None])
    negative = anchor & ~positive & ~torch.eye(3 * n, dtype=torch.bool)
    return positive, negative


def amplified_nt_xent(z: torch.Tensor, batch: int, shifts: int, temperature: float) -> torch.Tensor:
    """Feature-amplified NT-Xent (Eqs. 6-7): mean over positive pairs of
    -log(exp(sim_ij / tau) / sum_{k != i} exp(sim_ik / tau)), dissolved views among the k."""
    positive, negative = pair_layout(batch, shifts)
    positive, negative = positive.to(z.device), negative.to(z.device)
    z = F.normalize(z.float(), dim=1)
    similarity = z @ z.T / temperature
    denominator = torch.logsumexp(similarity.masked_fill(~(positive | negative), float("-inf")), dim=1)
    return (denominator[:, None] - similarity)[positive].mean()


def shift_labels(batch: int, shifts: int, device: torch.device) -> torch.Tensor:
    """The shift class of each of the 3BK views, in pair_layout's order."""
    return torch.arange(shifts, device=device).repeat_interleave(batch).repeat(3)


def dia_loss(config: DiaConfig, dissolver: Dissolver):
    """L = L_con + gamma L_cls on 3K views of each image (two augmentation branches, one dissolved)."""

    def loss(model: torch.nn.Module, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, k = x.shape[0], config.num_shifts
        t = torch.randint(
            config.dissolve_t_min, config.dissolve_t_max + 1, (b,), generator=generator, device=generator.device
        ).to(x.device)
        dissolved = dissolver(x, t)
        views = [
            augment(shift_images(source, shift, config.shift), config, generator)
            for source in (x, x, dissolved)
            for shift in range(k)
        ]
        z, logits = model(torch.cat(views))
        classification = F.cross_entropy(logits.float(), shift_labels(b, k, x.device))
        return amplified_nt_xent(z, b, k, config.temperature) + config.gamma * classification

    return loss


class FeatureBank(torch.nn.Module):
    """Normalised training features per shift and the balancing terms, stored in the bundle."""

    def __init__(self, features: torch.Tensor, lambda_con: torch.Tensor, lambda_cls: torch.Tensor):
        super().__init__()
        self.features: torch.Tensor
        self.lambda_con: torch.Tensor
        self.lambda_cls: torch.Tensor
        self.register_buffer("features", features)  # (K, M, d), unit norm
        self.register_buffer("lambda_con", lambda_con)  # (K,)
        self.register_buffer("lambda_cls", lambda_cls)  # (K,)


@torch.no_grad()
def shifted_outputs(model: torch.nn.Module, x: torch.Tensor, config: DiaConfig, batch_size: int = 64):
    """(z, shift logit) per shift without augmentation: (K, N, d) and (K, N)."""
    zs, logits = [], []
    for k in range(config.num_shifts):
        z_k, l_k = [], []
        for start in range(0, len(x), batch_size):
            z, logit = model(shift_images(x[start : start + batch_size], k, config.shift))
            z_k.append(z.float())
            l_k.append(logit[:, k].float())
        zs.append(torch.cat(z_k))
        logits.append(torch.cat(l_k))
    return torch.stack(zs), torch.stack(logits)


def contrastive_scores(z: torch.Tensor, bank: torch.Tensor, exclude_self: bool = False) -> torch.Tensor:
    """s_con per shift: max cosine similarity to the bank times the feature norm; (K, N)."""
    similarity = torch.einsum("knd,kmd->knm", F.normalize(z, dim=-1), bank)
    if exclude_self:
        similarity = similarity - 2 * torch.eye(similarity.shape[-1], device=z.device)  # never the sample itself
    return similarity.max(dim=-1).values * z.norm(dim=-1)


@torch.no_grad()
def build_feature_bank(model: torch.nn.Module, train_images: torch.Tensor, config: DiaConfig) -> FeatureBank:
    """Bank of training features and the balancing terms lambda = M / sum_m s(x_m) per shift; the
    contrastive term of a training image is measured against the other training images."""
    z, logits = shifted_outputs(model, train_images, config)
    bank = F.normalize(z, dim=-1)
    s_con = contrastive_scores(z, bank, exclude_self=True)
    m = z.shape[1]
    return FeatureBank(bank, m / s_con.sum(dim=1), m / logits.sum(dim=1))


def anomaly_scores(model: torch.nn.Module, x: torch.Tensor, bank: FeatureBank, config: DiaConfig) -> torch.Tensor:
    """2K - sum_k (lambda_con s_con + lambda_cls s_cls): CSI's normality score turned round, so that
    training images score about 0 and anomalies higher."""
    z, logits = shifted_outputs(model, x, config)
    normality = (
        bank.lambda_con[:, None] * contrastive_scores(z, bank.features) + bank.lambda_cls[:, None] * logits
    ).sum(dim=0)
    return 2 * config.num_shifts - normality


def new_encoder(config: DiaMethodConfig) -> ContrastiveEncoder:
    return ContrastiveEncoder(config.net, config.preprocess.channels, config.dia.num_shifts)


class DiaPredictor(Predictor):
    name = "dia"
    stride = 1

    def __init__(self, bundle: ModelBundle, device: torch.device, precision: str = "auto"):
        super().__init__(bundle, device, precision)
        method_config = from_dict(DiaMethodConfig, bundle.manifest["config"])
        self.config, self.preprocess = method_config.dia, method_config.preprocess
        encoder = new_encoder(method_config)
        encoder.load_state_dict(bundle.state_dict("encoder"))
        self.model = self.ready(encoder)
        bank = bundle.state_dict("bank")
        self.bank = FeatureBank(bank["features"], bank["lambda_con"], bank["lambda_cls"]).to(device)
        dissolver = load_dissolver(
            bundle.manifest["dissolver"], bundle.state_dict("dissolver"), self.config.dissolve_size, device
        )
        dissolver.denoiser = self.ready(dissolver.denoiser)
        self.dissolver = dissolver

    @torch.inference_mode()
    def predict(self, images: torch.Tensor) -> AnomalyResult:
        x = images.to(self.device)
        scores = anomaly_scores(self.model, x, self.bank, self.config).cpu().numpy().astype(np.float64)
        t = torch.full((len(x),), self.config.view_timestep, device=self.device, dtype=torch.long)
        return AnomalyResult(None, scores, from_model_range(self.dissolver(x, t)), None)
