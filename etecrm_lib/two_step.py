"""Two-step encoding models: fixed image features, then a linear map to the voxels.

Step 1 computes features that nothing in the fMRI data shaped (the Gabor wavelet pyramid of
``features.gabor``, or the layers of an ImageNet CNN from ``features.cnn``); step 2 learns only the
linear map from features to responses. Variants, by name:

- ``"gwp_ridge"``: Gabor pyramid + voxel-wise ridge (Kay et al. 2008), alpha per voxel by k-fold CV.
- ``"alexnet_ridge"``: AlexNet layers + voxel-wise ridge on each layer; each voxel keeps the layer
  with the best CV score (``result.info["layer_counts"]``; the weights used in
  ``result.info["weights"]``).
- ``"gwp_roiwise"``: Gabor pyramid + one ROI-wise read-out shared by all voxels of the ROI, trained
  by gradient descent with the *same selective optimization as ETECRM* (the weighted correlation
  loss ``-mean(r^3)`` with its self-adapting weights, Gaussian noise of s.d. 1 on the predictions,
  the epoch chosen on validation images carved from the train split; see :class:`RoiwiseConfig`). It
  isolates what selective optimization does without end-to-end feature learning.

Everything is fitted on ``dataset.train`` only; :meth:`TwoStepModel.score` is the one place that
touches the test split, through ``evaluation.score``::

    model = TwoStepModel("gwp_ridge", profile="quick").fit(ds, "V1")
    result = model.score(ds)          # an EncodingResult, like every other model's
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
import tqdm.auto

from . import regression
from .device import describe_device, get_device
from .evaluation import pearson_r, score
from .features.cnn import CNNConfig, CNNFeatures
from .features.gabor import GaborConfig, check_images, gabor_features
from .losses import LOSSES, loss_function
from .profiles import DEFAULT_PROFILE, Profile, check_profile
from .regression import RidgeConfig
from .training import ETECRMConfig, selection_score, split_train_val

TWO_STEP_MODELS = ("gwp_ridge", "alexnet_ridge", "gwp_roiwise")
"""The two-step models (names shared with ``ablations.VARIANTS``, the registry of every runnable
model)."""


SHARED_WITH_ETECRM = (
    "loss",
    "noise_std",
    "epochs",
    "batch_size",
    "learning_rate",
    "weight_decay",
    "val_fraction",
    "selection_voxels",
)
"""The fields of :class:`RoiwiseConfig` that are ETECRM's (``training.ETECRMConfig``): same
meaning, same values (:meth:`RoiwiseConfig.for_profile` copies them)."""


@dataclass
class RoiwiseConfig:
    """The ROI-wise read-out, trained with ETECRM's selective optimization (the fields of
    :data:`SHARED_WITH_ETECRM` are ``training.ETECRMConfig``'s, with its defaults).

    rank : width of the shared linear layer: prediction = (features @ W_shared) @ W_voxels + b, with
        W_shared (P, rank) common to all voxels of the ROI
    loss : "weighted_corr" (``-mean(r^3)``, ETECRM's), "corr" or "mse" (``losses.loss_function``)
    noise_std : s.d. of the Gaussian noise added to the predictions in training (0 = off)
    epochs, batch_size, learning_rate, weight_decay : Adam, last incomplete batch dropped
    val_fraction, selection_voxels : the epoch is chosen as ETECRM's (``training.selection_score``)
    """

    rank: int = 64
    loss: str = ETECRMConfig.loss
    noise_std: float = ETECRMConfig.noise_std
    epochs: int = ETECRMConfig.epochs
    batch_size: int = ETECRMConfig.batch_size
    learning_rate: float = ETECRMConfig.learning_rate
    weight_decay: float = ETECRMConfig.weight_decay
    val_fraction: float = ETECRMConfig.val_fraction
    selection_voxels: int = ETECRMConfig.selection_voxels

    @classmethod
    def for_profile(cls, profile: Profile = DEFAULT_PROFILE, **changes) -> "RoiwiseConfig":
        """ETECRM's settings of the profile (``ETECRMConfig.for_profile``); on "quick" a rank of
        16 and 40 epochs (a read-out on fixed features learns faster than a network); then
        ``changes``."""
        etecrm = ETECRMConfig.for_profile(profile)
        settings = {name: getattr(etecrm, name) for name in SHARED_WITH_ETECRM}
        if check_profile(profile) == "quick":
            settings |= {"rank": 16, "epochs": 40}
        return cls(**(settings | changes))

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.rank < 1 or self.epochs < 1 or self.batch_size < 4 or not 0 < self.val_fraction < 1:
            raise ValueError(
                "need rank >= 1, epochs >= 1, batch_size >= 4 and 0 < val_fraction < 1"
            )
        if not np.isfinite(self.noise_std) or self.noise_std < 0:
            raise ValueError(
                f"noise_std must be a finite number >= 0 (0 = off), got {self.noise_std!r}"
            )


@dataclass
class TwoStepConfig:
    """Everything that defines a two-step model: the features, the ridge and the ROI-wise
    read-out."""

    gabor: GaborConfig = field(default_factory=GaborConfig)
    cnn: CNNConfig = field(default_factory=CNNConfig)
    ridge: RidgeConfig = field(default_factory=RidgeConfig)
    roiwise: RoiwiseConfig = field(default_factory=RoiwiseConfig)

    @classmethod
    def for_profile(cls, profile: Profile = DEFAULT_PROFILE, **changes) -> "TwoStepConfig":
        """The four parts of the profile, then ``changes``: fields (``gabor=``, ...), or
        ``cnn_weights`` ("DEFAULT": download, a .pth path, or None: untrained, initialised with
        ``seed``) and ``seed`` for the CNN."""
        cnn = {"weights": changes.pop("cnn_weights", "DEFAULT"), "seed": changes.pop("seed", 0)}
        base = cls(
            GaborConfig.for_profile(profile),
            CNNConfig.for_profile(profile, **cnn),
            RidgeConfig.for_profile(profile),
            RoiwiseConfig.for_profile(profile),
        )
        return replace(base, **changes)


# ----------------------------------------------------------------------------- ROI-wise read-out
@dataclass
class RoiwiseFit:
    """A trained ROI-wise read-out: ``prediction = (x @ shared) @ readout + bias``.

    shared (P, rank), readout (rank, V), bias (V,); history: per-epoch training loss and selection
    score (mean validation r of the best-on-training voxels), and the chosen epoch.
    """

    shared: torch.Tensor
    readout: torch.Tensor
    bias: torch.Tensor
    history: dict
    val_r: torch.Tensor | None = (
        None  # (V,) each voxel's r on the validation images at the chosen epoch
    )

    def predict(self, features) -> torch.Tensor:
        x = torch.as_tensor(
            np.asarray(features, np.float32) if not isinstance(features, torch.Tensor) else features
        )
        return (x.to(self.shared.device, torch.float32) @ self.shared) @ self.readout + self.bias


def fit_roiwise(
    features,
    responses,
    config: RoiwiseConfig | None = None,
    seed: int = 0,
    device=None,
    progress: bool = True,
) -> RoiwiseFit:
    """Train the ROI-wise read-out on fixed (z-scored) features ``(N, P)`` -> responses ``(N, V)``,
    train split only.

    The same loop as ``training.fit_etecrm`` with a linear model in place of the CNN: each epoch,
    shuffle (seeded), Adam steps on ``loss(prediction + noise, y)``, then choose the epoch by the
    mean validation r of the voxels that fit the training images best. The validation images are
    the ``val_fraction`` of the given (train) rows that ``seed`` picks; the test split never reaches
    this function.
    """
    config = config or RoiwiseConfig()
    device = get_device(device)
    x = torch.as_tensor(np.asarray(features, np.float32), device=device)
    y = torch.as_tensor(np.asarray(responses, np.float32), device=device)
    fit, val = (
        torch.as_tensor(i, device=device)
        for i in split_train_val(x.shape[0], config.val_fraction, seed)
    )
    gen = torch.Generator().manual_seed(seed)
    noise_gen = torch.Generator(device=device).manual_seed(seed + 1_000_003)
    rank, n_steps = min(config.rank, x.shape[1]), len(fit) // config.batch_size
    if n_steps < 1:
        raise ValueError(
            f"{len(fit)} fitting images are fewer than one batch of {config.batch_size}"
        )
    shared = (
        (torch.randn(x.shape[1], rank, generator=gen) / x.shape[1] ** 0.5)
        .to(device)
        .requires_grad_()
    )
    readout = (torch.randn(rank, y.shape[1], generator=gen) / rank**0.5).to(device).requires_grad_()
    bias = y[fit].mean(0).clone().requires_grad_()
    params = [shared, readout, bias]
    optimizer = torch.optim.Adam(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    loss_fn = loss_function(config.loss)
    best = (-np.inf, [p.detach().clone() for p in params], -1, None)
    history = {"train_loss": [], "selection_score": []}
    for epoch in tqdm.auto.tqdm(
        range(config.epochs), desc="ROI-wise read-out", disable=not progress, leave=False
    ):
        order = fit[torch.randperm(len(fit), generator=gen).to(device)][
            : n_steps * config.batch_size
        ]
        losses, fit_pred = [], []
        for idx in order.view(n_steps, config.batch_size):
            pred = (x[idx] @ shared) @ readout + bias
            noise = config.noise_std * torch.randn(pred.shape, generator=noise_gen, device=device)
            loss = loss_fn(pred + noise, y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
            fit_pred.append(pred.detach())
        with torch.no_grad():
            val_r = pearson_r((x[val] @ shared) @ readout + bias, y[val])
        score = selection_score(
            pearson_r(torch.cat(fit_pred), y[order]), val_r, config.selection_voxels
        )
        history["train_loss"].append(float(torch.stack(losses).mean()))
        history["selection_score"].append(score)
        if score > best[0]:
            best = (score, [p.detach().clone() for p in params], epoch, val_r.detach().clone())
    history["best_epoch"], history["best_selection_score"] = best[2], best[0]
    return RoiwiseFit(*best[1], history, val_r=best[3])


# ----------------------------------------------------------------------------- the model
class TwoStepModel:
    """Fixed features + linear map, with the same ``fit / predict / score`` as every model of the
    book.

    variant : one of ``TWO_STEP_MODELS``; config : a :class:`TwoStepConfig` (default:
        ``for_profile(profile)``);
    cnn_weights : shortcut for the CNN's weights ("DEFAULT", a .pth path, or None = untrained).
    seed : seeds the ROI-wise read-out (initialisation, validation split, shuffling, noise) and the
        initialisation of an untrained CNN; the ridge variants are deterministic.
    """

    def __init__(
        self,
        variant: str = "gwp_ridge",
        config: TwoStepConfig | None = None,
        profile: Profile = DEFAULT_PROFILE,
        cnn_weights="DEFAULT",
        seed: int = 0,
        device=None,
        progress: bool = True,
    ):
        if variant not in TWO_STEP_MODELS:
            raise ValueError(
                f"unknown two-step variant {variant!r}; choose one of {TWO_STEP_MODELS}"
            )
        self.variant = variant
        self.config = config or TwoStepConfig.for_profile(
            profile, cnn_weights=cnn_weights, seed=seed
        )
        self.seed, self.device, self.progress = seed, get_device(device), progress
        self.fitted = None
        self.info = {}

    # -- features ---------------------------------------------------------------------------------
    def _raw_features(self, images):
        if self.variant == "alexnet_ridge":
            return self.extractor.transform(images)
        return gabor_features(images, self.config.gabor, self.device, progress=self.progress)

    def _standardize(self, raw, fit: bool = False):
        """z-score every feature with the TRAIN mean and s.d. (computed when ``fit`` is True)."""
        spaces = raw if isinstance(raw, dict) else {"gwp": raw}
        if fit:
            self.feature_stats = {}
            for name, a in spaces.items():
                sd = a.std(0)
                self.feature_stats[name] = (
                    a.mean(0),
                    np.where(sd > 1e-8, sd, 1.0).astype(np.float32),
                )
        out = {
            name: ((a - self.feature_stats[name][0]) / self.feature_stats[name][1]).astype(
                np.float32
            )
            for name, a in spaces.items()
        }
        return out if isinstance(raw, dict) else out["gwp"]

    def _check_images(self, images, what: str) -> np.ndarray:
        images = check_images(images)
        if self.fitted is not None and images.shape[1:] != self.image_shape:
            raise ValueError(
                f"{what} are {images.shape[1]}x{images.shape[2]} px but the model was fitted on "
                f"{self.image_shape[0]}x{self.image_shape[1]} px images; resize them to that size"
            )
        return images

    # -- fit / predict / score --------------------------------------------------------------------
    def fit(self, dataset, roi: str) -> "TwoStepModel":
        """Fit on ``dataset.train`` for one ROI (features, then the linear map). Returns self."""
        start = time.perf_counter()
        self.fitted = None  # a refit starts from scratch
        dataset.check_roi(roi)
        images = self._check_images(dataset.train.stimuli, "train images")
        responses = np.asarray(dataset.train.responses[roi], np.float32)
        usable = np.isfinite(responses).all(0) & (responses.std(0) > 0)
        if not usable.any():
            raise ValueError(
                f"ROI '{roi}' has no usable voxel (every voxel's train response is constant or not "
                f"finite); pick another ROI (available: {dataset.rois}) or check the data"
            )
        if self.variant == "alexnet_ridge":
            self.extractor = CNNFeatures(self.config.cnn, self.device, self.progress).fit(images)
        features = self._standardize(self._raw_features(images), fit=True)
        if self.variant == "gwp_ridge":
            self.fitted = regression.fit_ridge_cv(
                features,
                responses,
                self.config.ridge.alphas,
                n_folds=self.config.ridge.n_folds,
                score=self.config.ridge.score,
                voxel_chunk=self.config.ridge.voxel_chunk,
                device=self.device,
            )
        elif self.variant == "alexnet_ridge":
            self.fitted = regression.fit_layer_selection(
                features, responses, self.config.ridge, self.device
            )
        else:
            self.fitted = fit_roiwise(
                features,
                responses,
                self.config.roiwise,
                self.seed,
                self.device,
                progress=self.progress,
            )
        self.roi, self.dataset_name, self.n_voxels = roi, dataset.name, responses.shape[1]
        self.image_shape = images.shape[1:]
        self.info = self._describe(dataset, time.perf_counter() - start)
        return self

    def predict(self, images) -> np.ndarray:
        """Predicted responses ``float32 (N, V)`` of the fitted ROI's voxels to images ``(N, H, W)``
        in [0, 1]."""
        if self.fitted is None:
            raise RuntimeError("fit(dataset, roi) the model before predicting")
        images = self._check_images(images, "images")
        features = self._standardize(self._raw_features(images))
        with torch.no_grad():
            return self.fitted.predict(features).float().cpu().numpy()

    def score(self, dataset, keep_predictions: bool = True):
        """Held-out accuracy on ``dataset.test`` as an ``evaluation.EncodingResult``."""
        if self.fitted is None:
            raise RuntimeError("fit(dataset, roi) the model before scoring it")
        dataset.check_roi(self.roi)
        if dataset.n_voxels(self.roi) != self.n_voxels:
            raise ValueError(
                f"the model was fitted on {self.n_voxels} voxels of {self.roi} but this "
                "dataset has "
                f"{dataset.n_voxels(self.roi)}: score on the dataset it was fitted on"
            )
        return score(
            self.predict(dataset.test.stimuli),
            dataset,
            self.roi,
            self.variant,
            self.info,
            keep_predictions,
        )

    def _describe(self, dataset, seconds: float) -> dict:
        info = {
            "variant": self.variant,
            "roi": self.roi,
            "dataset": dataset.name,
            "seed": self.seed,
            "device": describe_device(self.device),
            "fit_seconds": round(seconds, 2),
            "n_train_images": int(dataset.train.n_images),
        }
        if self.variant == "alexnet_ridge":
            counts = torch.bincount(self.fitted.chosen, minlength=len(self.fitted.names)).tolist()
            info.update(
                weights=self.extractor.weights,
                cnn=asdict(self.config.cnn),
                layer_counts=dict(zip(self.fitted.names, counts)),
                n_features={n: int(self.feature_stats[n][0].size) for n in self.fitted.names},
            )
        else:
            info.update(
                gabor=asdict(self.config.gabor), n_features=int(self.feature_stats["gwp"][0].size)
            )
        if self.variant == "gwp_roiwise":
            info.update(
                roiwise=asdict(self.config.roiwise), best_epoch=self.fitted.history["best_epoch"]
            )
        else:
            fits = [self.fitted] if self.variant == "gwp_ridge" else list(self.fitted.fits.values())
            info.update(
                ridge={
                    "alphas": list(self.config.ridge.alphas),
                    "n_folds": self.config.ridge.n_folds,
                    "cv_score": self.config.ridge.score,
                },
                median_alpha=float(torch.median(torch.cat([f.alphas for f in fits]))),
            )
        info.update(self._validation_r())
        return info

    # -- validation score (train split only): lets a comparison choose a baseline without test data
    # --
    def _validation_r(self) -> dict:
        """``{"val_r": float32 (V,), "val_r_source": str}``: each voxel's r on data carved from the
        train split.

        Ridge variants: the mean held-out-fold r of the k-fold CV at each voxel's chosen alpha (and,
        for alexnet_ridge, its chosen layer); ROI-wise read-out: r on its validation images at the
        best epoch. Empty when the ridge was cross-validated on R^2 instead of r.
        """
        if self.variant == "gwp_roiwise":
            return {
                "val_r": self.fitted.val_r.float().cpu().numpy(),
                "val_r_source": "r on the validation images carved from the train split, at the "
                "best epoch",
            }
        if self.config.ridge.score != "r":
            return {}
        fits = (
            [self.fitted]
            if self.variant == "gwp_ridge"
            else [self.fitted.fits[n] for n in self.fitted.names]
        )
        best = torch.stack([f.best_cv_score for f in fits]).max(0).values
        return {
            "val_r": best.float().cpu().numpy(),
            "val_r_source": f"{self.config.ridge.n_folds}-fold CV on the train split: mean "
            "held-out r at "
            "the chosen alpha",
        }

    def voxel_alphas(self) -> np.ndarray:
        """float32 (V,): each voxel's chosen ridge penalty (in its chosen layer for
        alexnet_ridge)."""
        if self.variant == "gwp_ridge":
            return self.fitted.alphas.cpu().numpy()
        if self.variant == "alexnet_ridge":
            alphas = torch.stack([self.fitted.fits[n].alphas for n in self.fitted.names])
            return alphas.gather(0, self.fitted.chosen[None]).squeeze(0).cpu().numpy()
        raise ValueError("the ROI-wise read-out has no ridge penalty")
