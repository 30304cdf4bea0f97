"""Named model variants -> held-out results: the comparison and the ablations the paper lacks.

Every variant has a name a table can show and a runner that fits it on the train split of one ROI
and scores it on the test split (:func:`evaluation.score`), returning an
:class:`evaluation.EncodingResult`.

================== ===========================================================================
name               what it is
================== ===========================================================================
etecrm             ETECRM as its authors released it: squared (non-negative) regression weights,
                   weighted correlation loss -mean(r^3) (self-adapting weights r^2), noise s.d. 1
                   on the predictions in training
etecrm_unweighted  the same with the plain correlation loss -mean(r): no self-adapting weights
etecrm_no_noise    the same without noise regularization (noise s.d. 0)
etecrm_signed      the same with signed regression weights (W instead of W * W)
etecrm_mse         the same network trained with mean squared error: no selective optimization
gwp_ridge          two-step, voxel-wise: Gabor wavelet pyramid features + ridge per voxel
alexnet_ridge      two-step, voxel-wise: AlexNet layer features + ridge per voxel (best layer
                   per voxel)
gwp_roiwise        two-step, ROI-wise: Gabor features, one shared read-out per ROI trained with
                   the same selective optimization (r^3 loss, noise on the predictions)
================== ===========================================================================

Together they answer the referee's questions: what each part of selective optimization adds
(``etecrm`` against each ``etecrm_*``), what end-to-end learning adds over fixed features given the
*same* selective optimization (``etecrm`` vs ``gwp_roiwise``), and voxel-wise vs ROI-wise fitting of
the same features (``gwp_ridge`` vs ``gwp_roiwise``).

Each variant is trained on its own, from ``torch.manual_seed(seed)``, so its result does not depend
on what ran before it (a resumed run gives the numbers of an uninterrupted one). ETECRM variants
with the same seed share initial weights, validation split, batch order and noise draws: they
differ only by their switch.

>>> from etecrm_lib.ablations import run_variants
>>> results = run_variants(ds, ["etecrm", "gwp_ridge"], rois=["V1"], profile="quick")
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import tqdm.auto

from . import batched, gpu
from .device import describe_device, get_device
from .training import ETECRMConfig, ETECRMModel
from .two_step import TwoStepModel


@dataclass(frozen=True)
class Variant:
    """One named model or ablation.

    Attributes
    ----------
    name : str            the name in tables and file names (letters, digits, '_')
    family : str          "etecrm" (trained end to end) or "two_step" (fixed features + regression)
    description : str     one line for tables and the book
    options : dict        the switches that define the variant (passed to its runner)
    run : callable        ``run(dataset, variant, roi, *, profile, seed, device, progress,
                          cnn_weights) -> EncodingResult``: fits the variant on the train split
                          of one ROI, scores it
    """

    name: str
    family: str
    description: str
    options: dict
    run: Callable

    def __post_init__(self):
        if not self.name.replace("_", "").isalnum():
            raise ValueError(f"variant name {self.name!r} must hold only letters, digits and '_'")


VARIANTS: dict = {}


def register(variant: Variant, replace: bool = False) -> Variant:
    """Add a variant to :data:`VARIANTS` (an error if the name is taken, unless ``replace``)."""
    if variant.name in VARIANTS and not replace:
        raise ValueError(f"a variant named {variant.name!r} is already registered")
    VARIANTS[variant.name] = variant
    return variant


def get_variant(name: str) -> Variant:
    """The registered variant ``name``; a KeyError listing the known names otherwise."""
    if name not in VARIANTS:
        raise KeyError(f"unknown model/variant {name!r}; known: {', '.join(VARIANTS)}")
    return VARIANTS[name]


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and GPU) so that one model's fit is repeatable."""
    with gpu.RNG_LOCK:
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)


def run_variant(
    dataset,
    name: str,
    roi: str,
    profile: str = "quick",
    seed: int = 0,
    device=None,
    progress: bool = True,
    cnn_weights=None,
):
    """Fit the variant ``name`` on the train split of one ROI and score it on the test split ->
    ``EncodingResult``.

    ``cnn_weights``: weights of the CNN of ``alexnet_ridge``: None (untrained: no download),
    "DEFAULT" (torchvision's ImageNet weights, downloaded once) or a path to a ``.pth`` state dict.
    Adds to the result's ``info``: variant family, description and options, profile, seed, device
    name, torch version and the wall time of fitting and scoring.
    """
    variant = get_variant(name)
    dataset.check_roi(roi)
    device = get_device(device)
    seed_everything(seed)
    start = time.perf_counter()
    result = variant.run(
        dataset,
        variant,
        roi,
        profile=profile,
        seed=seed,
        device=device,
        progress=progress,
        cnn_weights=cnn_weights,
    )
    return _describe(result, variant, profile, seed, device, time.perf_counter() - start)


def _describe(result, variant: Variant, profile: str, seed: int, device, seconds: float):
    """Add what every result of a variant records to ``result.info``; returns ``result``."""
    result.info.update(
        {
            "family": variant.family,
            "description": variant.description,
            "options": dict(variant.options),
            "profile": profile,
            "seed": seed,
            "device": describe_device(device),
            "torch_version": torch.__version__,
            "wall_time_s": round(seconds, 2),
        }
    )
    return result


def trains_in_groups(name: str) -> bool:
    """True for the variants of the ETECRM network (run by ``ETECRMModel``), which
    :func:`run_etecrm_group` can train together; False for every other model."""
    return get_variant(name).run is _run_etecrm


def run_etecrm_group(dataset, runs, profile: str = "quick", device=None, progress: bool = True):
    """Fit ETECRM variants as one batched group (``batched.fit_group``), score each -> one
    ``EncodingResult`` per run, in order, each the result ``run_variant`` gives for it.

    ``runs``: ``(name, roi, seed)`` of ETECRM-family variants (any ROIs and seeds of ``dataset``).
    A result's ``wall_time_s`` is its share of the group's training time plus its own scoring;
    ``info["group_size"]`` says how many models trained together.
    """
    device = get_device(device)
    specs = []
    for name, roi, seed in runs:
        variant = get_variant(name)
        if not trains_in_groups(name):
            raise ValueError(
                f"{name!r} is not one of the ETECRM network's variants: only those train in a "
                "group; fit it with run_variant"
            )
        specs.append((roi, ETECRMConfig.for_profile(profile, **variant.options), seed, name))
    members = [
        batched.Member(dataset.train.responses[roi], config, seed, f"{name} {roi} seed {seed}")
        for (roi, config, seed, name) in specs
    ]
    start = time.perf_counter()
    models = batched.fit_group(dataset.train.stimuli, members, device, progress)
    share = (time.perf_counter() - start) / max(len(models), 1)
    results = []
    for (name, roi, seed), model in zip(runs, models):
        model.roi, model.name = roi, name
        start = time.perf_counter()
        result = model.score(dataset)
        result.info["feature_weights"] = ETECRM_FEATURE_WEIGHTS
        result.info["group_size"] = len(models)
        seconds = share + time.perf_counter() - start
        results.append(_describe(result, get_variant(name), profile, seed, device, seconds))
    return results


def run_variants(
    dataset,
    variants,
    rois=None,
    profile: str = "quick",
    seed: int = 0,
    device=None,
    progress: bool = True,
    cnn_weights=None,
) -> list:
    """Fit and score every variant on every ROI; returns ``list[EncodingResult]`` (ROI-major, in
    ``variants`` order).

    ``variants``: names from :data:`VARIANTS` (or ``DEFAULT_VARIANTS``). ``rois``: default all of
    the dataset's. ``cnn_weights``: see :func:`run_variant`. Nothing is written to disk
    (:func:`reproduce.reproduce` does that).
    """
    names = [variants] if isinstance(variants, str) else list(dict.fromkeys(variants))
    for name in names:
        get_variant(name)
    rois = list(rois or dataset.rois)
    for roi in rois:
        dataset.check_roi(roi)
    results = []
    with tqdm.auto.tqdm(
        total=len(rois) * len(names), desc="variants", unit="model", disable=not progress
    ) as bar:
        for roi in rois:
            for name in names:
                bar.set_postfix_str(f"{roi}: {name}")
                results.append(
                    run_variant(dataset, name, roi, profile, seed, device, progress, cnn_weights)
                )
                bar.update()
    return results


# ----------------------------------------------------------------------------- the runners
ETECRM_FEATURE_WEIGHTS = (
    "learned end to end from the fMRI data (random initial weights, no pretraining)"
)


def _run_etecrm(dataset, variant, roi, *, profile, seed, device, progress, cnn_weights=None):
    """Train one ETECRM variant on one ROI (``training.train_etecrm``) and score it.

    The variant's ``options`` are changes to ``ETECRMConfig.for_profile(profile)``.
    """
    config = ETECRMConfig.for_profile(profile, **variant.options)
    model = ETECRMModel(config, seed=seed, device=device, progress=progress, name=variant.name).fit(
        dataset, roi
    )
    res = model.score(dataset)
    res.info["feature_weights"] = ETECRM_FEATURE_WEIGHTS
    return res


_ETECRM = {
    "etecrm": (
        "ETECRM as released: squared weights, -mean(r^3) loss, noise s.d. 1 on the predictions",
        {},
    ),
    "etecrm_unweighted": (
        "ETECRM with the plain correlation loss -mean(r): no self-adapting weights",
        {"loss": "corr"},
    ),
    "etecrm_no_noise": ("ETECRM without noise regularization (noise s.d. 0)", {"noise_std": 0.0}),
    "etecrm_signed": (
        "ETECRM with signed regression weights (W, not W*W)",
        {"readout_weights": "signed"},
    ),
    "etecrm_mse": (
        "the ETECRM network trained with mean squared error: no selective optimization",
        {"loss": "mse", "noise_std": 0.0},
    ),
}
for _name, (_description, _options) in _ETECRM.items():
    register(Variant(_name, "etecrm", _description, _options, _run_etecrm))


def _run_two_step(dataset, variant, roi, *, profile, seed, device, progress, cnn_weights=None):
    """Fit one two-step model (``two_step.TwoStepModel``) on the ROI and score it."""
    model = TwoStepModel(
        variant.name,
        profile=profile,
        cnn_weights=cnn_weights,
        seed=seed,
        device=device,
        progress=progress,
    ).fit(dataset, roi)
    res = model.score(dataset)
    if variant.options["features"] == "alexnet":
        res.info["feature_weights"] = f"AlexNet: {res.info.get('weights', cnn_weights)}"
    else:
        res.info["feature_weights"] = "none: Gabor wavelet pyramid (fixed, hand-designed filters)"
    res.info["config"] = {
        k: res.info[k] for k in ("gabor", "cnn", "ridge", "roiwise") if k in res.info
    }
    return res


_TWO_STEP = {
    "gwp_ridge": (
        "two-step, voxel-wise: Gabor wavelet pyramid + ridge per voxel (alpha by CV)",
        {"features": "gwp", "fit": "voxelwise"},
    ),
    "alexnet_ridge": (
        "two-step, voxel-wise: AlexNet layer features + ridge per voxel (best layer per voxel)",
        {"features": "alexnet", "fit": "voxelwise"},
    ),
    "gwp_roiwise": (
        "two-step, ROI-wise: Gabor features + one shared read-out per ROI, with ETECRM's selective "
        "optimization",
        {"features": "gwp", "fit": "roiwise"},
    ),
}
for _name, (_description, _options) in _TWO_STEP.items():
    register(Variant(_name, "two_step", _description, _options, _run_two_step))

DEFAULT_VARIANTS = tuple(_ETECRM) + tuple(_TWO_STEP)
"""The variants ``etecrm reproduce`` runs when none are named: all of them."""
