"""Image-conditioned diffusion restoration (Baugh et al.): a DDPM whose U-Net sees the input image beside
x_t, trained to restore healthy images from synthetically corrupted ones; anomalies are where the
pseudo-healthy restoration differs structurally (1 - SSIM) from the input. One model per task fold,
ensembled by averaging maps."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ...bundle import ModelBundle
from ...config import from_dict
from ...devices import on_device
from ...filters import ssim_map
from ...metrics import average_precision
from ...nets.denoiser import build_denoiser, unet_stride
from ...preprocess import from_model_range, network_intensity
from ...schedules import VPSchedule, make_sampler, sample_conditioned
from ...synthetic import parameter_generator
from ..base import AnomalyResult, MapPredictor
from .config import CddpmMethodConfig
from .tasks import TASK_NAMES


@dataclass
class TaskFold:
    """One cross-validation fold: three tasks to train on, the other two to monitor."""

    index: int
    train_tasks: tuple[str, ...]
    monitor_tasks: tuple[str, ...]

    @property
    def component(self) -> str:
        return f"fold{self.index}"


def task_folds(count: int, first: int = 0) -> list[TaskFold]:
    """`count` of the C(5, 3) = 10 splits of the five tasks (3 train / 2 monitor), from split `first` on."""
    splits = list(itertools.combinations(TASK_NAMES, 3))
    if not 0 <= first < len(splits):
        raise ValueError(f"cddpm first_fold must be between 0 and {len(splits) - 1}, not {first}")
    if not 1 <= count <= len(splits) - first:
        raise ValueError(f"cddpm folds must be between 1 and {len(splits) - first} from split {first}, not {count}")
    return [
        TaskFold(i, train, tuple(t for t in TASK_NAMES if t not in train))
        for i, train in enumerate(splits[first : first + count], start=first)
    ]


def new_conditional_unet(config: CddpmMethodConfig) -> torch.nn.Module:
    channels = config.preprocess.channels
    return build_denoiser(config.net, channels, config.preprocess.image_size, in_channels=2 * channels)


def corrupt(
    images01: torch.Tensor,
    tasks: dict,
    fold_tasks: tuple[str, ...],
    clean_fraction: float,
    generator: torch.Generator,
    task_config,
) -> torch.Tensor:
    """The conditioning images: each sample corrupted by one of the fold's tasks, drawn at random,
    except a `clean_fraction` of samples that keep the clean image."""
    condition = images01.clone()
    draws = parameter_generator(generator)
    clean = torch.rand(len(images01), generator=draws).tolist()
    choice = torch.randint(0, len(fold_tasks), (len(images01),), generator=draws).tolist()
    for task_index, name in enumerate(fold_tasks):
        picked = [i for i in range(len(images01)) if clean[i] >= clean_fraction and choice[i] == task_index]
        if picked:
            index = on_device(torch.tensor(picked), images01.device)
            condition[index] = tasks[name](images01[index], generator, task_config)[0]
    return condition


def model_input(images: torch.Tensor, config: CddpmMethodConfig) -> torch.Tensor:
    """[-1, 1] images to the [-1, 1] intensities the network restores (`cddpm.intensity`)."""
    if config.cddpm.intensity == "unit":
        return images  # untouched, so that bundles made before the option score bit for bit as they did
    unit = (images.float() + 1.0) / 2.0
    return network_intensity(unit, config.cddpm.intensity, config.preprocess.foreground_above).to(images.dtype) * 2 - 1


def conditional_loss(config: CddpmMethodConfig, tasks: dict, fold: TaskFold):
    """DDPM's simple loss with the corrupted image as conditioning (epsilon, or x0 for "sample")."""
    schedule = VPSchedule(config.schedule)

    def loss(model: torch.nn.Module, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        x0 = model_input(batch, config)
        condition = (
            corrupt((x0 + 1) / 2, tasks, fold.train_tasks, config.cddpm.clean_fraction, generator, config.tasks) * 2 - 1
        )
        t = torch.randint(0, schedule.num_timesteps, (x0.shape[0],), device=x0.device, generator=generator)
        noise = torch.randn(x0.shape, device=x0.device, generator=generator, dtype=x0.dtype)
        prediction = model(torch.cat([schedule.add_noise(x0, noise, t), condition], dim=1), t).sample
        target = x0 if config.cddpm.prediction_type == "sample" else noise
        return F.mse_loss(prediction.float(), target.float())

    return loss


def restore(model: torch.nn.Module, images: torch.Tensor, config: CddpmMethodConfig, seed: int) -> torch.Tensor:
    """Pseudo-healthy restoration of [-1, 1] images with the configured sampler, seeded."""
    scheduler = make_sampler(config.schedule, config.cddpm.sampler, config.cddpm.prediction_type)
    generator = torch.Generator(device=images.device).manual_seed(seed)
    return sample_conditioned(model, images, scheduler, config.cddpm.sampling_steps, generator)


def anomaly_map(restored: torch.Tensor, images: torch.Tensor, sigma: float) -> torch.Tensor:
    """1 - SSIM between restoration and input, on [0, 1] images."""
    return 1.0 - ssim_map((restored + 1) / 2, (images + 1) / 2, sigma)


@torch.no_grad()
def monitor_fold(
    model: torch.nn.Module,
    images: torch.Tensor,
    tasks: dict,
    fold: TaskFold,
    config: CddpmMethodConfig,
    generator: torch.Generator,
) -> dict:
    """Pixel AP of the fold's map on healthy images corrupted by the two tasks it never trained on."""
    model.eval()
    results = {}
    for name in fold.monitor_tasks:
        corrupted, labels = tasks[name]((images + 1) / 2, generator, config.tasks)
        corrupted = corrupted * 2 - 1
        maps = anomaly_map(restore(model, corrupted, config, config.cddpm.seed), corrupted, config.cddpm.ssim_sigma)
        results[name] = average_precision(maps.flatten().cpu().numpy(), labels.flatten().cpu().numpy())
    return {"monitor_pixel_ap": results}


class CddpmPredictor(MapPredictor):
    name = "cddpm"

    def __init__(self, bundle: ModelBundle, device: torch.device, precision: str = "auto"):
        super().__init__(bundle, device, precision)
        self.method_config = from_dict(CddpmMethodConfig, bundle.manifest["config"])
        self.config, self.preprocess = self.method_config.cddpm, self.method_config.preprocess
        self.stride = unet_stride(self.method_config.net)
        self.models = []
        for fold in task_folds(self.config.folds, self.config.first_fold):
            model = new_conditional_unet(self.method_config)
            model.load_state_dict(bundle.state_dict(fold.component))
            self.models.append(self.ready(model))

    @torch.inference_mode()
    def predict(self, images: torch.Tensor) -> AnomalyResult:
        x = model_input(images.to(self.device), self.method_config)
        maps, restorations = [], []
        for model in self.models:
            restored = restore(model, x, self.method_config, self.config.seed)
            restorations.append(restored)
            maps.append(anomaly_map(restored, x, self.config.ssim_sigma))
        stacked = torch.stack(maps)
        mean = stacked.mean(dim=0).cpu().numpy()
        spread = stacked.std(dim=0).cpu().numpy() if len(maps) > 1 else None
        restoration = from_model_range(torch.stack(restorations).mean(dim=0))
        return AnomalyResult(mean, np.array([self.reduce(m) for m in mean]), restoration, spread)

    def reduce(self, heatmap: np.ndarray) -> float:
        return float(heatmap.mean())  # the mean pixel-wise prediction is the sample-level score (Sec. 2)
