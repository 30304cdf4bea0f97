"""Training one ETECRM model, top to bottom: the released design by default.

``train_etecrm(dataset, "V1", config)`` trains the network of ``models.py`` on the *train* split of
one ROI and returns an :class:`ETECRMModel` (``.predict``, ``.score``, ``.history``). The test split
is never read here: :func:`fit_etecrm` only receives the train arrays and carves its own validation
images out of them.

The authors' training (https://github.com/KaiQiao1992/ETECRM, ``SFCNet5.py``), in our words, and the
defaults of :class:`ETECRMConfig` (the preset ``"paper"``):

- Adam, learning rate 1e-3, weight decay 1e-6; batches of 64 images, the last incomplete batch
  dropped, a new shuffle every epoch; 50 epochs.
- Loss: the weighted correlation loss ``-mean_v(r_v^3) + 1e-4 mean(prediction)`` (``losses.py``).
- Noise regularization: during training only, Gaussian noise of standard deviation 1.0 is added to
  the **predictions** before the loss (not to the images, not to the targets). Correlation ignores
  scale, so to beat fixed-size noise the network must make large predictions, and it can afford
  large, confident predictions only for voxels it really predicts.
- Model selection: after every epoch, the voxels are ranked by their correlation on the training
  fit, and the epoch whose mean validation r over the best 300 of them is highest is kept.

**One deliberate difference.** The released code takes its validation images from vim-1's 120 test
images: the test data choose the epoch. Here the validation images are ``val_fraction`` (10%) of the
*training* images, held back from fitting; the test images are touched once, at the end, by
``evaluation.score``.

Selective optimization, each part a switch of :class:`ETECRMConfig` (``ablations.py`` names them):
``loss="weighted_corr"`` (self-adapting weights ``w_v = r_v^2`` inside the loss) or ``"corr"``
(plain ``-mean(r)``, no weights) or ``"mse"``; ``noise_std`` (1.0, or 0 = off); ``readout_weights``
(``"squared"`` >= 0, or ``"signed"``).

Speed (GPU only, ``gpu.py``): low-precision autocast (``precision``: bf16 on A100/H100-class cards,
float16 with loss scaling on a T4, ``gpu.resolve_precision``), fused Adam, data on the GPU, and the
whole training step recorded once as a CUDA graph and replayed; the loop below is the same either
way. Checkpoints (``checkpoints.py``) let a run stop and continue exactly.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import tqdm.auto

from . import checkpoints, gpu
from .data.dataset import constant_columns
from .device import describe_device, get_device
from .evaluation import pearson_r, score
from .losses import LOSSES, loss_function
from .models import READOUT_WEIGHTS, ETECRMNet
from .profiles import DEFAULT_PROFILE, Profile, check_profile


# ============================================================================ configuration
@dataclass
class ETECRMConfig:
    """Everything that defines one ETECRM training run. The defaults are the authors' released
    design.

    Network (``models.py``): ``image_size`` (images are resized to it; 128), ``channels`` (of each
    of the ``n_layers`` 3x3 stride-2 conv layers; 128 and 3), ``readout_weights`` ("squared" >= 0,
    or "signed").
    Selective optimization: ``loss`` ("weighted_corr" = ``-mean(r^3)``, "corr" = ``-mean(r)``,
    "mse"), ``mean_penalty`` (1e-4, the weight of ``mean(prediction)`` in the correlation losses),
    ``noise_std`` (s.d. of the Gaussian noise added to the predictions in training, in the units of
    the z-scored responses; 0 = off).
    Optimisation: Adam with ``learning_rate`` and ``weight_decay``; ``batch_size`` images per step
    (last incomplete batch dropped); ``epochs``; ``val_fraction`` of the train split held back for
    choosing the epoch; ``selection_voxels``: the epoch is chosen by the mean validation r of this
    many voxels, those ranked best by their r on the training fit.
    Speed (GPU only): ``precision`` ("auto", "bf16", "fp16" or "fp32"; "auto" picks by the card,
    ``gpu.resolve_precision``; the CPU always runs float32), ``cuda_graph`` (not with "fp16", whose
    loss scaling runs step by step).
    """

    image_size: int = 128
    channels: int = 128
    n_layers: int = 3
    readout_weights: str = "squared"
    loss: str = "weighted_corr"
    mean_penalty: float = 1e-4
    noise_std: float = 1.0
    epochs: int = 50
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-6
    val_fraction: float = 0.1
    selection_voxels: int = 300
    precision: str = "auto"
    cuda_graph: bool = True

    @classmethod
    def for_profile(cls, profile: Profile = DEFAULT_PROFILE, **changes) -> "ETECRMConfig":
        """``"full"`` (alias ``"paper"``): the released design; ``"quick"``: the same shape,
        smaller, for a CPU.

        The quick profile keeps every design choice (three 3x3 stride-2 layers, squared weights, the
        loss, the noise, Adam, drop-last batches) and scales down what costs time on 2 CPU cores:
        64 x 64 images (the quick simulation's size), 16 channels, 32-image batches, 20 epochs.
        """
        if check_profile(profile) == "quick":
            base = cls(image_size=64, channels=16, batch_size=32, epochs=20)
        else:
            base = cls()
        return replace(base, **changes)

    def __post_init__(self):
        problems = []
        for name in (
            "image_size",
            "channels",
            "n_layers",
            "epochs",
            "batch_size",
            "selection_voxels",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                problems.append(f"{name} must be a whole number >= 1, got {value!r}")
        for name in ("mean_penalty", "noise_std", "learning_rate", "weight_decay", "val_fraction"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float, np.floating))
                or not math.isfinite(value)
            ):
                problems.append(f"{name} must be a finite number, got {value!r}")
        if not problems:
            if self.learning_rate <= 0:
                problems.append(f"learning_rate must be > 0, got {self.learning_rate}")
            for name in ("mean_penalty", "noise_std", "weight_decay"):
                if getattr(self, name) < 0:
                    problems.append(
                        f"{name} must be >= 0 (0 switches it off), got {getattr(self, name)}"
                    )
            if not 0 < self.val_fraction < 1:
                problems.append(f"val_fraction must be in (0, 1), got {self.val_fraction}")
            if self.loss != "mse" and self.batch_size < 4:
                problems.append(
                    f"batch_size {self.batch_size} is too small for a correlation loss: r "
                    "over a batch "
                    "of 1-3 images carries (almost) no information; use at least 4, e.g. 64"
                )
            if self.image_size % 2**self.n_layers:
                problems.append(
                    f"image_size {self.image_size} must be divisible by 2**{self.n_layers} "
                    f"(each of the {self.n_layers} conv layers halves it)"
                )
        for name, allowed in (
            ("loss", LOSSES),
            ("readout_weights", READOUT_WEIGHTS),
            ("precision", gpu.PRECISIONS),
        ):
            if getattr(self, name) not in allowed:
                problems.append(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if problems:
            raise ValueError("invalid ETECRMConfig: " + "; ".join(problems))

    def to_dict(self) -> dict:
        """A JSON-able dict of all fields (for checkpoints and ``EncodingResult.info``)."""
        return json.loads(json.dumps(asdict(self)))

    def build_network(self, n_voxels: int, seed: int = 0) -> ETECRMNet:
        """The network for ``n_voxels`` voxels, its initial weights drawn from ``seed`` (global RNG
        untouched; one thread at a time, so that models built side by side,
        ``gpu.run_concurrently``, get their own seeds)."""
        with gpu.RNG_LOCK, torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return ETECRMNet(
                n_voxels, self.image_size, self.channels, self.n_layers, self.readout_weights
            )


# ============================================================================ results
@dataclass
class TrainingHistory:
    """Per-epoch record of one run (lists indexed by epoch, 0-based), for the book's plots.

    train_loss : mean training loss over the epoch's batches (with the noise)
    train_r : per-voxel r ``(V,)`` of the epoch's (noise-free) training predictions, each epoch
    val_r : per-voxel r ``(V,)`` on the held-back validation images, each epoch
    selection_score : mean validation r of the ``selection_voxels`` best-on-training voxels
    epoch_seconds : wall time of each epoch; best_epoch : the epoch whose weights were kept
    batch_size, device, precision : as trained ("bf16", "fp16" or "fp32", ``gpu.resolve_precision``)
    """

    train_loss: list = field(default_factory=list)
    train_r: list = field(default_factory=list)
    val_r: list = field(default_factory=list)
    selection_score: list = field(default_factory=list)
    epoch_seconds: list = field(default_factory=list)
    best_epoch: int = -1
    batch_size: int = 0
    device: str = ""
    precision: str = ""

    @property
    def n_epochs(self) -> int:
        return len(self.train_loss)

    @property
    def val_median_r(self) -> list:
        """Median over voxels of the validation r, each epoch."""
        return [float(np.median(r)) for r in self.val_r]


class ETECRMModel:
    """ETECRM for one ROI behind the library's model interface (``encoding_model.EncodingModel``):
    ``fit(dataset, roi)``, ``predict(images)``, ``score(dataset)``, as ``two_step.TwoStepModel``.

    ``config`` (default: ``ETECRMConfig.for_profile(profile)``), ``seed`` (initial weights,
    validation split, batch order, noise), ``device``, ``checkpoint`` (see :func:`fit_etecrm`) and
    ``name`` (the model name its results carry). After fitting: ``net`` (the weights of the chosen
    epoch), ``history`` (:class:`TrainingHistory`), ``val_r`` (float32 ``(V,)``, each voxel's r on
    the held-back validation images at the chosen epoch) and ``roi``.
    """

    def __init__(
        self,
        config: ETECRMConfig | None = None,
        profile: Profile = DEFAULT_PROFILE,
        seed: int = 0,
        device=None,
        progress: bool = True,
        checkpoint=None,
        name: str = "etecrm",
    ):
        self.config = config or ETECRMConfig.for_profile(profile)
        self.seed, self.device, self.progress, self.checkpoint = (
            seed,
            get_device(device),
            progress,
            checkpoint,
        )
        self.name = name
        self.net, self.history, self.val_r, self.roi = None, None, None, None

    def fit(self, dataset, roi: str) -> "ETECRMModel":
        """Train on ``dataset.train`` for one ROI (the test split is not read). Returns self."""
        dataset.check_roi(roi)
        trained = fit_etecrm(
            dataset.train.stimuli,
            dataset.train.responses[roi],
            self.config,
            self.seed,
            self.device,
            self.checkpoint,
            self.progress,
            description=f"ETECRM {roi}",
        )
        self.net, self.history, self.val_r, self.roi = (
            trained.net,
            trained.history,
            trained.val_r,
            roi,
        )
        return self

    def predict(self, images, batch_size: int = 256) -> np.ndarray:
        """Predicted responses ``(N, V)`` float32 for images ``(N, H, W)`` in [0, 1] (resized as in
        training)."""
        if self.net is None:
            raise RuntimeError("fit(dataset, roi) the model before predicting")
        x = prepare_images(images, self.config.image_size, "images to predict")
        return predict(self.net, x, batch_size, self.config.precision).cpu().numpy()

    def score(self, dataset, keep_predictions: bool = True):
        """Held-out accuracy on ``dataset.test`` for this model's ROI ->
        ``evaluation.EncodingResult``."""
        if self.roi is None:
            raise ValueError(
                "this model knows no ROI (not fitted, or fit_etecrm on plain arrays): "
                "fit(dataset, roi) first"
            )
        info = {
            "config": self.config.to_dict(),
            "seed": self.seed,
            "best_epoch": self.history.best_epoch,
            "epochs_run": self.history.n_epochs,
            "device": self.history.device,
            "precision": self.history.precision,
            "train_seconds": float(sum(self.history.epoch_seconds)),
            "val_r": self.val_r,
        }
        return score(
            self.predict(dataset.test.stimuli), dataset, self.roi, self.name, info, keep_predictions
        )


# ============================================================================ data
def prepare_images(images, image_size: int, what: str = "train images") -> torch.Tensor:
    """Check images ``(N, H, W)`` in [0, 1] and return float32 ``(N, 1, S, S)`` at ``image_size``
    (CPU)."""
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    if x.ndim != 3 or x.shape[1] != x.shape[2]:
        raise ValueError(
            f"{what} must be square grayscale images (N, H, W) with H == W, got shape "
            f"{tuple(x.shape)}"
        )
    if not torch.isfinite(x).all():
        raise ValueError(f"{what} contain NaN or inf values")
    if x.numel() and (x.min() < -1e-3 or x.max() > 1 + 1e-3):
        raise ValueError(
            f"{what} must lie in [0, 1], got [{float(x.min()):.3g}, {float(x.max()):.3g}]"
        )
    x = x.unsqueeze(1)
    if x.shape[-1] != image_size:
        x = F.interpolate(
            x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False
        )
    return x.contiguous()


def check_responses(responses, n_images: int) -> torch.Tensor:
    """Check responses ``(N, V)`` (finite, N matching the images, not all constant) and return them
    as float32."""
    y = torch.as_tensor(np.asarray(responses, dtype=np.float32))
    if y.ndim != 2 or y.shape[0] != n_images or y.shape[1] < 1:
        raise ValueError(
            f"responses must be (N_images, V) = ({n_images}, V>=1), got shape {tuple(y.shape)}"
        )
    bad = ~torch.isfinite(y).all(dim=0)
    if bad.any():
        cols = torch.nonzero(bad).flatten().tolist()
        raise ValueError(
            f"responses contain NaN/inf in {len(cols)} of {y.shape[1]} voxels (columns {cols[:10]}"
            f"{' ...' if len(cols) > 10 else ''}); drop those voxels first "
            "(EncodingDataset does this for you) or fill them in"
        )
    flat = torch.as_tensor(constant_columns(y.numpy()))  # relative: responses in any units
    if flat.all():
        raise ValueError(
            f"all {y.shape[1]} voxels have constant responses over the {n_images} training images: "
            "there is nothing to learn (check that the responses were loaded and not zeroed)"
        )
    if flat.any():
        warnings.warn(
            f"{int(flat.sum())} of {y.shape[1]} voxels have constant responses over the training "
            "images; "
            "they cannot be learned (an EncodingDataset drops such voxels)",
            stacklevel=3,
        )
    return y.contiguous()


def split_train_val(n_images: int, val_fraction: float, seed: int) -> tuple:
    """Indices ``(fit, val)`` of a seeded random split of the train split (int64 numpy arrays,
    sorted)."""
    n_val = int(round(n_images * val_fraction))
    if n_val < 3 or n_images - n_val < 4:
        raise ValueError(
            f"{n_images} training images are too few to hold back {val_fraction:.0%} for "
            "validation "
            "(need >= 3 validation and >= 4 fitting images); give more images or a larger "
            "val_fraction"
        )
    order = np.random.default_rng(seed).permutation(n_images)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def selection_score(train_r: torch.Tensor, val_r: torch.Tensor, n_voxels: int) -> float:
    """The released code's rule for choosing the epoch: mean validation r of the ``n_voxels`` voxels
    with the highest r on the training fit (all voxels if the ROI has fewer). ``(V,), (V,) ->
    float``."""
    best = torch.argsort(train_r, descending=True)[:n_voxels]
    return float(val_r[best].mean())


@torch.no_grad()
def predict(
    net: ETECRMNet, images: torch.Tensor, batch_size: int = 256, precision: str = "auto"
) -> torch.Tensor:
    """Evaluation-mode predictions ``(N, V)`` float32, on the network's device, for images
    ``(N, 1, S, S)``. ``precision``: a setting of ``ETECRMConfig.precision`` (resolved per device).
    """
    device = next(net.parameters()).device
    net.eval()
    out = []
    for start in range(0, images.shape[0], batch_size):
        with gpu.autocast(device, gpu.precision_for(precision, device)):
            out.append(net(images[start : start + batch_size].to(device)).float())
    return torch.cat(out)


@torch.no_grad()
def start_at_mean_response(
    net: ETECRMNet, images: torch.Tensor, responses: torch.Tensor, precision: str = "auto"
) -> None:
    """Shift the regression bias so that the mean prediction of every voxel over ``images`` equals
    its mean response. Used for the MSE loss only (the correlation losses ignore offsets).

    Why: with the released initialisation the first predictions lie far from the z-scored responses
    (mean about +1.8 against 0 at full size: 32,768 non-negative features times non-negative
    weights). The quickest way for MSE to close that gap is to drive every ReLU of the feature
    layers below zero, and after a few Adam steps no feature is active and the network predicts a
    constant (r = 0 for every voxel). Starting at the mean leaves MSE only the image-to-image
    variation to fit.
    """
    predicted = predict(net, images, precision=precision).mean(dim=0)
    net.bias -= predicted.to(net.bias.device) - responses.mean(dim=0).to(net.bias.device)


def _clone_state(net) -> dict:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


# ============================================================================ the trainer
def train_etecrm(
    dataset,
    roi: str,
    config: ETECRMConfig | None = None,
    seed: int = 0,
    device=None,
    checkpoint=None,
    progress: bool = True,
) -> ETECRMModel:
    """Train ETECRM on the train split of one ROI of an ``EncodingDataset`` (the test split is not
    read).

    The same as ``ETECRMModel(config, seed=seed, ...).fit(dataset, roi)``; ``model.score(dataset)``
    then gives the held-out ``EncodingResult``. See :func:`fit_etecrm` for the arguments.
    """
    return ETECRMModel(
        config, seed=seed, device=device, progress=progress, checkpoint=checkpoint
    ).fit(dataset, roi)


def fit_etecrm(
    images,
    responses,
    config: ETECRMConfig | None = None,
    seed: int = 0,
    device=None,
    checkpoint=None,
    progress: bool = True,
    description: str = "ETECRM",
) -> ETECRMModel:
    """Train one ETECRM network on training arrays; the model returned knows no ROI (``.roi`` None).

    images : ``(N, H, W)`` in [0, 1], square (resized to ``config.image_size``)
    responses : ``(N, V)`` responses of the V voxels of one ROI (finite; z-scored in vim-1)
    config : :class:`ETECRMConfig` (default: the released design)
    seed : initial weights, validation split, batch order and noise all follow from it
    device : None = GPU if present (``device.get_device``)
    checkpoint : path of a checkpoint file, written after every epoch; if it exists when called,
        training continues from it (``checkpoints.py``)
    """
    config = config or ETECRMConfig()
    device = get_device(device)
    x = prepare_images(images, config.image_size)  # (N, 1, S, S), CPU
    y = check_responses(responses, x.shape[0])  # (N, V)
    fit, val = split_train_val(x.shape[0], config.val_fraction, seed)
    on = gpu.data_device(x.numel() * 4, device)  # where the images live
    x_fit, x_val = x[fit].to(on), x[val].to(on)
    y_fit, y_val = y[fit].to(device), y[val].to(device)
    n_fit, n_voxels = len(fit), y.shape[1]

    net = gpu.prepare_network(config.build_network(n_voxels, seed), device)
    if config.loss == "mse":
        start_at_mean_response(net, x_fit, y_fit, config.precision)
    # "bf16", "fp16" or "fp32" for this card; the scaler scales the loss for "fp16" (else a no-op)
    precision, scaler = gpu.precision_and_scaler(config.precision, device)
    graphed = config.cuda_graph and on.type == "cuda" and precision != "fp16"
    optimizer = gpu.make_optimizer(
        net.parameters(), config.learning_rate, config.weight_decay, device, graphed
    )
    loss_fn = loss_function(config.loss)
    shuffle = torch.Generator().manual_seed(seed)  # batch order
    noise_gen = torch.Generator(device=device).manual_seed(seed + 1_000_003)

    def train_step(idx, noise):
        """One step on the images ``x_fit[idx]``: predict, add the noise, loss, backward, Adam."""
        net.train()
        with gpu.autocast(device, precision):
            pred = net(x_fit[idx].to(device)).float()  # (B, V)
        loss = loss_fn(pred + noise, y_fit[idx.to(device)], config.mean_penalty)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()  # = loss.backward() unless float16's loss scaling is on
        scaler.step(optimizer)
        scaler.update()
        return loss.detach(), pred.detach()

    batch_size = gpu.largest_batch_that_fits(
        lambda b: _try_forward_backward(net, x_fit[:b], device, precision),
        _batch_size(config.batch_size, n_fit),
        device,
    )
    n_steps = n_fit // batch_size  # the last incomplete batch is dropped
    history = TrainingHistory(
        batch_size=batch_size, device=describe_device(device), precision=precision
    )
    best = {
        "state": _clone_state(net),
        "score": -math.inf,
        "epoch": -1,
        "val_r": torch.zeros(n_voxels),
    }
    run_id = None
    if checkpoint is not None:
        run_id = checkpoints.fingerprint(config.to_dict(), seed, checkpoints.data_fingerprint(x, y))
        if Path(checkpoint).exists():
            history, best = _resume(
                checkpoint, run_id, net, optimizer, (shuffle, noise_gen), device
            )
    step = train_step
    if graphed:
        example = (
            torch.zeros(batch_size, dtype=torch.long, device=on),
            torch.zeros(batch_size, n_voxels, device=device),
        )
        step = gpu.cuda_graph_step(train_step, example, list(net.parameters()), optimizer)

    for epoch in tqdm.auto.tqdm(
        range(history.n_epochs, config.epochs), desc=description, disable=not progress, leave=False
    ):
        started = time.perf_counter()
        # 1. a new order of the fitting images and new noise for every prediction of this epoch
        order = torch.randperm(n_fit, generator=shuffle)[: n_steps * batch_size].to(on)
        noise = config.noise_std * torch.randn(
            n_steps * batch_size, n_voxels, generator=noise_gen, device=device
        )
        # 2. one pass over the fitting images; losses and predictions stay on the device until the
        #    end
        losses = torch.zeros(n_steps, device=device)
        fit_pred = torch.zeros(n_steps * batch_size, n_voxels, device=device)
        for s in range(n_steps):
            rows = slice(s * batch_size, (s + 1) * batch_size)
            losses[s], fit_pred[rows] = step(order[rows], noise[rows])
        check_losses_finite(losses, epoch, description)
        # 3. which epoch to keep: mean validation r of the voxels that fit the training images best
        train_r = pearson_r(fit_pred, y_fit[order.to(device)])
        val_r = pearson_r(predict(net, x_val, precision=precision), y_val)
        score = selection_score(train_r, val_r, config.selection_voxels)
        if score > best["score"]:
            best = {
                "state": _clone_state(net),
                "score": score,
                "epoch": epoch,
                "val_r": val_r.cpu(),
            }
        record_epoch(
            history,
            losses,
            train_r,
            val_r,
            score,
            best["epoch"],
            gpu.seconds_since(started, device),
        )
        if checkpoint is not None:
            checkpoints.save(
                checkpoint, run_id, net, optimizer, (shuffle, noise_gen), best, history
            )

    net.load_state_dict(best["state"])
    net.eval()
    model = ETECRMModel(config, seed=seed, device=device, progress=progress, checkpoint=checkpoint)
    model.net, model.history, model.val_r = net, history, best["val_r"].float().numpy()
    return model


# ============================================================================ the loop's small
# helpers
def _batch_size(batch_size: int, n_fit: int) -> int:
    """``batch_size``, or the number of fitting images (with a warning) if there are fewer."""
    if batch_size > n_fit:
        warnings.warn(
            f"batch_size {batch_size} is larger than the {n_fit} fitting images; using "
            f"batches of {n_fit}",
            stacklevel=3,
        )
        return n_fit
    return batch_size


def _try_forward_backward(net, images, device, precision: str) -> None:
    """A forward and backward pass with no update (to see whether a batch fits in GPU memory)."""
    with gpu.autocast(device, precision):
        net(images.to(device)).float().sum().backward()
    net.zero_grad(set_to_none=True)


def check_losses_finite(losses: torch.Tensor, epoch: int, what: str) -> None:
    """Raise a FloatingPointError naming the first batch whose loss was NaN/inf (one host sync per
    epoch)."""
    finite = torch.isfinite(losses).cpu()
    if not finite.all():
        batch = int(torch.nonzero(~finite).flatten()[0])
        raise FloatingPointError(
            f"training of {what} diverged in epoch {epoch + 1}, batch {batch + 1}: the loss is "
            "NaN/inf. Check the responses for extreme values, or lower learning_rate"
        )


def record_epoch(
    history: TrainingHistory, losses, train_r, val_r, score: float, best_epoch: int, seconds: float
) -> None:
    """Append one epoch to ``history``: mean of the batch ``losses``, per-voxel ``train_r`` and
    ``val_r``, the epoch's selection ``score``, the best epoch so far and its wall ``seconds``."""
    history.train_loss.append(float(losses.mean()))
    history.train_r.append(train_r.float().cpu().numpy())
    history.val_r.append(val_r.float().cpu().numpy())
    history.selection_score.append(score)
    history.epoch_seconds.append(seconds)
    history.best_epoch = best_epoch


def _resume(path, run_id, net, optimizer, generators, device) -> tuple:
    """Load a checkpoint into the network, optimizer and generators; return ``(history, best)``."""
    ckpt = checkpoints.load(path, run_id)
    net.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    for gen, state in zip(generators, ckpt["generators"]):
        gen.set_state(state)
    best = dict(ckpt["best"])
    best["state"] = {k: v.to(device) for k, v in best["state"].items()}
    history = TrainingHistory(**ckpt["history"])
    for name in checkpoints.PER_VOXEL:
        setattr(history, name, [t.numpy() for t in getattr(history, name)])
    return history, best
