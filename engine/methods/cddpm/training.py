"""The image-conditioned diffusion model's training plan: one network per task fold, each monitored
afterwards on the two tasks it never trained on."""

from __future__ import annotations

import torch

from ...data import load_training_images, validation_sample
from ...preprocess import check_intensity
from ..training_plan import Trainable, Trained, TrainingInputs, TrainingPlan
from .config import CddpmMethodConfig
from .foreign import foreign_images
from .model import conditional_loss, model_input, monitor_fold, new_conditional_unet, task_folds
from .tasks import make_tasks


def cddpm_plan(config: CddpmMethodConfig, inputs: TrainingInputs) -> TrainingPlan:
    check_intensity(config.cddpm.intensity, "cddpm.intensity")  # before any image is loaded
    tasks = make_tasks(foreign_images(config.preprocess.image_size))
    folds = task_folds(config.cddpm.folds, config.cddpm.first_fold)
    networks = [
        Trainable(
            fold.component,
            new_conditional_unet(config),
            conditional_loss(config, tasks, fold),
            {"train_tasks": list(fold.train_tasks), "monitor_tasks": list(fold.monitor_tasks)},
        )
        for fold in folds
    ]

    def monitor_folds(trained: Trained) -> dict:
        normals, _ = validation_sample(trained.data_root, config.cddpm.monitor_images)
        images = load_training_images([item.path for item in normals], config.preprocess).to(trained.device)
        images = model_input(images, config)
        for fold, record in zip(folds, trained.records, strict=True):
            generator = torch.Generator(device=trained.device).manual_seed(config.cddpm.seed)
            record.update(monitor_fold(trained.networks[fold.component], images, tasks, fold, config, generator))
        return {}

    return TrainingPlan(networks, ["cddpm"], monitor_folds)
