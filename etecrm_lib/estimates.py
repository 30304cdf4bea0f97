"""How long a chapter takes on this GPU: measured at the chapter's start, then extrapolated.

Every chapter's set-up cell calls ``book.check_runtime(chapter)``; on a GPU that asks
:func:`chapter_estimate`, which trains ETECRM for two epochs on random data of the chapter's own
shape (the profile's image size and number of training images, the voxels of its largest ROI, the
precision this card gets), times the second epoch (the first records the CUDA graph), and
multiplies by the ETECRM trainings the chapter runs (:data:`CHAPTER_WORK`). It is an
extrapolation: trainings run one after another in it, and the ridge models, bootstraps and figures
of a chapter are not timed (on a GPU they add a minute or two).
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from .data.calibration import SimulationConfig
from .data_size import DataSizeConfig
from .training import ETECRMConfig, fit_etecrm

CHAPTER_WORK = {
    "04_end_to_end": [(8, "V1", 1.0)],  # hand loop, train_etecrm, 2 variants x 3 seeds
    "05_voxel_weights": [(3, "V1", 1.0)],  # 3 seeds
    "06_weighted_correlation_loss": [(9, "V1", 1.0)],  # 3 variants x 3 seeds
    "07_noise_regularization": [(6, "V1", 1.0)],  # 2 variants x 3 seeds
    "08_comparison": [(8, "V1", 1.0), (8, "V4", 1.0)],  # 4 ETECRM variants x 2 seeds, 2 ROIs
    "09_data_size": [],  # from DataSizeConfig: see chapter_work
    "10_exercises": [(2, "V1", 1.0)],  # with and without noise
}
"""The ETECRM trainings each chapter runs: ``[(trainings, ROI, images relative to the profile's
training images), ...]``. Chapter 9's come from its ``DataSizeConfig`` (:func:`chapter_work`).
Chapters 1-3 train no ETECRM.
The image counts and voxels come from the simulated subject (``SimulationConfig.for_profile``)."""


def chapter_work(chapter: str, profile: str) -> list:
    """:data:`CHAPTER_WORK` of ``chapter``; for chapter 9, one training per ROI, seed and subset
    size of ``DataSizeConfig.for_profile(profile)`` (counted as V1-sized)."""
    if chapter == "09_data_size":
        config = DataSizeConfig.for_profile(profile)
        n_train = SimulationConfig.for_profile(profile).n_train
        return [(len(config.rois) * config.seeds, "V1", sum(config.sizes) / n_train)]
    return CHAPTER_WORK.get(chapter, [])


def seconds_per_epoch(
    profile: str, n_voxels: int, precision: str = "auto", device="cuda", n_images: int | None = None
) -> tuple:
    """``(seconds, precision)``: one epoch of ETECRM training of ``profile``'s shape on ``device``,
    timed on the second of two epochs of random images and responses (the first records the graph).
    """
    rng = np.random.default_rng(0)
    config = replace(ETECRMConfig.for_profile(profile), epochs=2, precision=precision)
    n = n_images or SimulationConfig.for_profile(profile).n_train
    images = rng.uniform(size=(n, config.image_size, config.image_size)).astype(np.float32)
    responses = rng.normal(size=(n, n_voxels)).astype(np.float32)
    model = fit_etecrm(images, responses, config, device=device, progress=False)
    return model.history.epoch_seconds[-1], model.history.precision


def chapter_estimate(chapter: str, profile: str, precision: str = "auto", device="cuda") -> dict:
    """The measured estimate for ``chapter`` (e.g. "08_comparison") with ``profile`` on ``device``.

    Returns ``{"minutes", "precision", "epoch_seconds", "trainings", "measure_seconds"}``;
    ``minutes`` is 0 for a chapter that trains no ETECRM.
    """
    started = time.perf_counter()
    work = chapter_work(chapter, profile)
    if not work:
        return {"minutes": 0.0, "precision": "", "epoch_seconds": 0.0, "trainings": 0}
    voxels = SimulationConfig.for_profile(profile).voxels  # the simulated subject's ROIs
    largest = max(voxels[roi] for _, roi, _ in work)
    epoch, used = seconds_per_epoch(profile, largest, precision, device)
    epochs = ETECRMConfig.for_profile(profile).epochs
    seconds = sum(n * scale * epochs * epoch for n, _, scale in work)
    return {
        "minutes": seconds / 60,
        "precision": used,
        "epoch_seconds": epoch,
        "trainings": sum(n for n, _, _ in work),
        "measure_seconds": time.perf_counter() - started,
    }


def estimate_sentence(chapter: str, device_name: str) -> str:
    """What ``check_runtime`` prints on a GPU: the full and quick estimates for ``chapter``."""
    full = chapter_estimate(chapter, "full")
    if not full["trainings"]:
        return "This chapter trains no ETECRM model: a few minutes on any GPU (not measured)."
    quick = chapter_estimate(chapter, "quick")
    return (
        f"Measured on this GPU ({device_name}, {full['precision']}): one full-profile epoch takes "
        f"{full['epoch_seconds']:.2f} s; extrapolated to this chapter's {full['trainings']} ETECRM "
        f"trainings, the full profile takes about {full['minutes']:.0f} min and the quick profile "
        f"about {max(quick['minutes'], 0.1):.1f} min (ridge models and figures not timed)."
    )
