"""Training one ETECRM model, top to bottom.

``train_etecrm(dataset, "V1", config)`` trains the network of ``models.py`` on the *train* split of
one ROI and returns a :class:`TrainedModel` (``.predict``, ``.score``, ``.history``,
``.voxel_weights``). The test split is never read here: the trainer only ever receives the train
arrays (:func:`fit_etecrm` takes plain arrays), and carves its own validation part out of them.

One epoch:

1. shuffle the fitting images (seeded generator), draw this epoch's regularization noise;
2. for each batch: predict, loss (``losses.py``) with the current voxel weights, AdamW step;
3. predict the held-back validation images; per-voxel r; the new voxel weights
   ``w_v = max(r_v, 0) ** weight_power`` (mean 1) if ``voxel_weights`` is on;
4. early stopping on the mean validation r: keep a copy of the best weights, stop after
   ``patience`` epochs without improvement, and give back the best.

Selective optimization, each a switch of :class:`ETECRMConfig`:

- ``voxel_weights``: self-adapting voxel weights (step 3). Off: every voxel weighs 1.
- ``loss="corr"``: correlation loss over the batch, weighted by the voxel weights, i.e. the paper's
  weighted correlation loss ``1 - sum_v w_v r_v / sum_v w_v``; ``loss="mse"``: mean squared error
  (also voxel-weighted when ``voxel_weights`` is on).
- ``noise_std``: noise regularization. Our well-defined version of what the paper leaves unclear:
  during training only, independent Gaussian noise of standard deviation ``noise_std`` (in image
  units, images span [0, 1]) is added to every pixel of every input image, drawn afresh for each
  image in each epoch. The network cannot fit response details that hinge on exact pixel values,
  which is what fitting measurement noise of ineffective voxels needs. 0 switches it off.
- ``dropout`` (not part of selective optimization, a usual regularizer): each flattened feature
  feeding the regression layer is zeroed with probability ``dropout`` during training.

Speed on a GPU: data stay on the GPU, bf16 autocast, fused AdamW, no host synchronisation inside
an epoch (losses are accumulated on the device and read once per epoch), and the whole training
step (batch gather, forward, loss, backward, AdamW) recorded once as a CUDA graph and replayed:
a network this small is otherwise limited by launching its ~100 kernels per step, not by
arithmetic. On an H100 one ROI model (1750 images of 128 x 128, batch 64) trains at about
0.025 s per epoch this way, 0.085 s without the graph (``benchmarks/bench_training.py``).
Reproducible on the CPU: the same seed gives the same weights, and a run resumed from its
checkpoint continues exactly.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .device import describe_device, get_device
from .losses import LOSSES, batch_pearson_r, encoding_loss, voxel_weights_from_r
from .models import READOUTS, ETECRMNet
from .storage import atomic_write

# fields that only say how long to train: a checkpoint may be resumed with other values
RESUMABLE_FIELDS = ("epochs", "patience")


# ============================================================================ configuration
@dataclass
class ETECRMConfig:
    """Everything that defines one ETECRM training run (network, selective optimization, optimiser).

    Network (``models.py``): ``image_size`` (images are resized to it), ``channels`` (one conv block
    each), ``first_kernel``, ``readout`` ("dense" = the paper's fully connected regression, or
    "factorized"), ``dropout``.
    Selective optimization: ``voxel_weights`` (self-adapting weights), ``weight_power`` (their
    exponent), ``loss`` ("corr" or "mse"; "corr" + ``voxel_weights`` = the paper's weighted
    correlation loss), ``noise_std`` (Gaussian input noise, image units; 0 = off).
    Optimisation: AdamW with ``learning_rate`` and ``weight_decay``, ``batch_size`` images per step,
    at most ``epochs`` epochs, early stopping after ``patience`` epochs without a better mean
    validation r, ``val_fraction`` of the train split held back for validation,
    ``mixed_precision`` (bf16 autocast on a GPU; the CPU always runs float32), ``cuda_graph`` (on a GPU,
    record the training step once as a CUDA graph and replay it: the same maths, launched at once).
    """

    image_size: int = 128
    channels: tuple = (32, 64, 64, 64)
    first_kernel: int = 5
    readout: str = "dense"
    dropout: float = 0.3
    loss: str = "corr"
    voxel_weights: bool = True
    weight_power: float = 1.0
    noise_std: float = 0.1
    epochs: int = 200
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.1
    patience: int = 30
    mixed_precision: bool = True
    cuda_graph: bool = True

    @classmethod
    def for_profile(cls, profile: str = "full", **changes) -> "ETECRMConfig":
        """``"quick"`` (CPU, 64 x 64, a narrow network, few epochs) or ``"full"`` (= ``"default"``, 128 x 128)."""
        if profile == "quick":
            base = cls(image_size=64, channels=(16, 32, 32, 32), epochs=40, batch_size=32, patience=10)
        elif profile in ("full", "default"):
            base = cls()
        else:
            raise ValueError(f"profile must be 'quick' or 'full' (alias 'default'), got {profile!r}")
        return replace(base, **changes)

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)
        problems = []
        if self.loss not in LOSSES:
            problems.append(f"loss must be one of {LOSSES}, got {self.loss!r} (the paper's weighted correlation "
                            "loss is loss='corr' with voxel_weights=True)")
        if self.readout not in READOUTS:
            problems.append(f"readout must be one of {READOUTS}, got {self.readout!r}")
        if not 0 <= self.dropout < 1:
            problems.append(f"dropout must be in [0, 1), got {self.dropout}")
        if self.noise_std < 0:
            problems.append(f"noise_std must be >= 0 (0 switches noise regularization off), got {self.noise_std}")
        if self.weight_power <= 0:
            problems.append(f"weight_power must be > 0, got {self.weight_power}")
        if not 0 < self.val_fraction < 1:
            problems.append(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        for name in ("epochs", "batch_size", "patience", "image_size"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.learning_rate <= 0 or self.weight_decay < 0:
            problems.append(f"learning_rate must be > 0 and weight_decay >= 0, got {self.learning_rate}, {self.weight_decay}")
        if self.image_size % 2 ** len(self.channels):
            problems.append(f"image_size {self.image_size} must be divisible by 2**{len(self.channels)} "
                            f"(each of the {len(self.channels)} conv blocks halves it)")
        if problems:
            raise ValueError("invalid ETECRMConfig: " + "; ".join(problems))

    def to_dict(self) -> dict:
        """A JSON-able dict of all fields (for checkpoints and ``EncodingResult.info``)."""
        return json.loads(json.dumps(asdict(self)))

    def build_network(self, n_voxels: int, seed: int = 0) -> ETECRMNet:
        """The network for ``n_voxels`` voxels, its initial weights drawn from ``seed`` (global RNG untouched)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return ETECRMNet(n_voxels, self.image_size, self.channels, self.first_kernel, self.readout)


# ============================================================================ results
@dataclass
class TrainingHistory:
    """Per-epoch record of one run (lists indexed by epoch, 0-based), for the book's plots.

    train_loss : mean training loss over the epoch's batches
    val_mean_r, val_median_r : mean / median over voxels of the validation r (held-back train images)
    voxel_weights : the voxel weights ``(V,)`` after each epoch's update (ones when switched off)
    epoch_seconds : wall time of each epoch
    best_epoch : the epoch whose weights were kept (highest ``val_mean_r``)
    """

    train_loss: list = field(default_factory=list)
    val_mean_r: list = field(default_factory=list)
    val_median_r: list = field(default_factory=list)
    voxel_weights: list = field(default_factory=list)
    epoch_seconds: list = field(default_factory=list)
    best_epoch: int = -1
    stopped_early: bool = False
    batch_size: int = 0
    device: str = ""

    @property
    def n_epochs(self) -> int:
        return len(self.train_loss)

    def record(self, train_loss: float, val_r: torch.Tensor, weights: torch.Tensor, seconds: float) -> None:
        self.train_loss.append(float(train_loss))
        self.val_mean_r.append(float(val_r.mean()))
        self.val_median_r.append(float(val_r.float().quantile(0.5)))
        # .copy(): on the CPU .numpy() is a view, and the trainer updates the weights in place
        self.voxel_weights.append(weights.detach().float().cpu().numpy().copy())
        self.epoch_seconds.append(float(seconds))


@dataclass
class TrainedModel:
    """A trained ETECRM network for one ROI, with how it got there.

    net : the network (best validation epoch), on ``device``
    voxel_weights : float32 ``(V,)``, the self-adapting weights at the best epoch (ones when off)
    val_r : float32 ``(V,)``, each voxel's r on the held-back validation images at the best epoch
    """

    net: ETECRMNet
    config: ETECRMConfig
    seed: int
    history: TrainingHistory
    voxel_weights: np.ndarray
    val_r: np.ndarray
    roi: str | None = None
    name: str = "etecrm"

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @torch.no_grad()
    def predict(self, images, batch_size: int = 256) -> np.ndarray:
        """Predicted responses ``(N, V)`` float32 for images ``(N, H, W)`` in [0, 1] (resized as in training)."""
        x = prepare_images(images, self.config.image_size, "images to predict")
        return predict_tensor(self.net, x, self.device, batch_size, self.config.mixed_precision).cpu().numpy()

    def score(self, dataset, model: str | None = None, keep_predictions: bool = True):
        """Held-out accuracy on ``dataset.test`` for this model's ROI -> ``evaluation.EncodingResult``."""
        from .evaluation import score

        if self.roi is None:
            raise ValueError("this model was fitted on plain arrays (fit_etecrm) and knows no ROI; set model.roi first")
        info = {"config": self.config.to_dict(), "seed": self.seed, "best_epoch": self.history.best_epoch,
                "epochs_run": self.history.n_epochs, "device": self.history.device,
                "train_seconds": float(sum(self.history.epoch_seconds)),
                "voxel_weights": self.voxel_weights, "val_r": self.val_r}
        return score(self.predict(dataset.test.stimuli), dataset, self.roi, model or self.name, info, keep_predictions)


# ============================================================================ data
def prepare_images(images, image_size: int, what: str = "train images") -> torch.Tensor:
    """Check images ``(N, H, W)`` in [0, 1] and return float32 ``(N, 1, S, S)`` at ``image_size`` (CPU)."""
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    if x.ndim != 3 or x.shape[1] != x.shape[2]:
        raise ValueError(f"{what} must be square grayscale images (N, H, W) with H == W, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{what} contain NaN or inf values")
    if x.numel() and (x.min() < -1e-3 or x.max() > 1 + 1e-3):
        raise ValueError(f"{what} must lie in [0, 1], got [{float(x.min()):.3g}, {float(x.max()):.3g}]")
    x = x.unsqueeze(1)
    if x.shape[-1] != image_size:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
    return x.contiguous()


def check_responses(responses, n_images: int) -> torch.Tensor:
    """Check responses ``(N, V)`` (finite, N matching the images) and return them as float32."""
    y = torch.as_tensor(np.asarray(responses, dtype=np.float32))
    if y.ndim != 2 or y.shape[0] != n_images or y.shape[1] < 1:
        raise ValueError(f"responses must be (N_images, V) = ({n_images}, V>=1), got shape {tuple(y.shape)}")
    bad = ~torch.isfinite(y).all(dim=0)
    if bad.any():
        cols = torch.nonzero(bad).flatten().tolist()
        raise ValueError(f"responses contain NaN/inf in {len(cols)} of {y.shape[1]} voxels (columns {cols[:10]}"
                         f"{' ...' if len(cols) > 10 else ''}); drop those voxels first "
                         "(EncodingDataset does this for you) or fill them in")
    return y.contiguous()


def split_train_val(n_images: int, val_fraction: float, seed: int) -> tuple:
    """Indices ``(fit, val)`` of a seeded random split of the train split (int64 numpy arrays, sorted)."""
    n_val = int(round(n_images * val_fraction))
    if n_val < 3 or n_images - n_val < 4:
        raise ValueError(f"{n_images} training images are too few to hold back {val_fraction:.0%} for validation "
                         f"(need >= 3 validation and >= 4 fitting images); give more images or a larger val_fraction")
    order = np.random.default_rng(seed).permutation(n_images)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def clamp_batch_size(batch_size: int, n_fit: int) -> int:
    """``batch_size``, or the number of fitting images (with a warning) if there are fewer."""
    if batch_size > n_fit:
        warnings.warn(f"batch_size {batch_size} is larger than the {n_fit} fitting images; using batches of {n_fit}",
                      stacklevel=3)
        return n_fit
    return batch_size


def data_fingerprint(images: torch.Tensor, responses: torch.Tensor) -> str:
    """SHA-256 of the training arrays, so a checkpoint is only resumed on the data it was trained on."""
    h = hashlib.sha256()
    for t in (images, responses):
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def fits_on_device(nbytes: int, device: torch.device) -> bool:
    """Whether ``nbytes`` of data can live on ``device`` (at most half its free memory)."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes < free // 2


# ============================================================================ the pieces of a step
def make_generators(seed: int, device: torch.device) -> tuple:
    """``(shuffle, noise)``: a CPU generator for the batch order, one on ``device`` for regularization noise."""
    shuffle = torch.Generator().manual_seed(seed)
    noise = torch.Generator(device=device).manual_seed(seed + 1_000_003)
    return shuffle, noise


def draw_epoch_noise(config: ETECRMConfig, n_samples: int, n_features: int, generator: torch.Generator,
                     device: torch.device) -> tuple:
    """One epoch's regularization noise, one row per image in the epoch's order.

    Returns ``(input_noise, feature_mask)``: ``(n, 1, S, S)`` Gaussian pixel noise of std
    ``noise_std`` (None if 0) and the ``(n, F)`` dropout mask, 0 with probability ``dropout``, else
    ``1 / (1 - dropout)`` (None if 0). Noise first, then mask, from ``generator``.
    """
    s = config.image_size
    noise = mask = None
    if config.noise_std > 0:
        noise = torch.randn(n_samples, 1, s, s, generator=generator, device=device) * config.noise_std
    if config.dropout > 0:
        keep = torch.rand(n_samples, n_features, generator=generator, device=device) >= config.dropout
        mask = keep.float() / (1.0 - config.dropout)
    return noise, mask


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on a GPU when ``enabled``; a no-op on the CPU (float32 there).

    Its cache of bf16 weight copies is off: it is of no use for one forward pass per step, and CUDA
    graphs cannot record it.
    """
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled and device.type == "cuda",
                          cache_enabled=False)


def make_optimizer(params: list, config: ETECRMConfig, device: torch.device, capturable: bool = False):
    """AdamW over ``params``; on a GPU the fused version (one kernel for all parameters)."""
    if device.type == "cuda":
        return torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay, fused=True,
                                 capturable=capturable)
    return torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)


def use_cuda_graph(config: ETECRMConfig, device: torch.device, data_device: torch.device) -> bool:
    """Whether to record the training step as a CUDA graph: asked for, on a GPU, with the data on it."""
    return config.cuda_graph and device.type == "cuda" and data_device.type == "cuda"


def step_runner(train_step, params: list, optimizer, device: torch.device, use_graph: bool):
    """A function that runs one training step and returns its loss tensor.

    ``train_step()`` computes the loss of the current batch buffers, backpropagates and updates. Eager:
    gradients are zeroed, then ``train_step`` runs. With ``use_graph`` (GPU only): the step's kernels
    are recorded once as a CUDA graph and each call replays them -- one launch instead of a hundred,
    which is what a network this small needs. The batch must then come through buffers whose contents
    the caller refills before each call (the graph reads the same addresses every time).
    """
    def eager():
        optimizer.zero_grad(set_to_none=True)
        return train_step()

    if not use_graph:
        return eager
    # recording needs a few warm-up steps on a side stream first; they change the weights and the
    # optimiser state, so both are put back afterwards: training starts where it stood
    saved_params = [p.detach().clone() for p in params]
    saved_state = {p: {k: v.clone() if torch.is_tensor(v) else v for k, v in st.items()} for p, st in optimizer.state.items()}
    try:
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(3):
                optimizer.zero_grad(set_to_none=True)
                train_step()
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        optimizer.zero_grad(set_to_none=True)      # the recorded backward writes fresh gradients each replay
        with torch.cuda.graph(graph):
            loss = train_step()
    except RuntimeError as err:
        warnings.warn(f"could not record the training step as a CUDA graph ({err}); training without one", stacklevel=2)
        use_graph = False
    finally:
        with torch.no_grad():
            for p, saved in zip(params, saved_params):
                p.copy_(saved)
            for p, state in optimizer.state.items():
                for key, value in state.items():
                    if torch.is_tensor(value):
                        value.copy_(saved_state[p][key]) if p in saved_state else value.zero_()
    if not use_graph:
        return eager

    def replay():
        graph.replay()
        return loss
    return replay


@torch.no_grad()
def predict_tensor(net, images: torch.Tensor, device: torch.device, batch_size: int = 256,
                   mixed_precision: bool = True) -> torch.Tensor:
    """Evaluation-mode predictions ``(N, V)`` float32 on ``device`` for images ``(N, 1, S, S)`` (anywhere)."""
    net.eval()
    out = []
    for start in range(0, images.shape[0], batch_size):
        x = images[start:start + batch_size].to(device, non_blocking=True)
        with autocast(device, mixed_precision):
            out.append(net(x).float())
    return torch.cat(out)


@dataclass
class EarlyStopping:
    """Remember the best validation score; say when ``patience`` epochs passed without a better one."""

    patience: int
    best_score: float = -math.inf
    best_epoch: int = -1

    def update(self, score: float, epoch: int) -> bool:
        """Record ``score`` of ``epoch``; True if it is the best so far."""
        if score > self.best_score:
            self.best_score, self.best_epoch = score, epoch
            return True
        return False

    def should_stop(self, epoch: int) -> bool:
        """True once ``patience`` epochs after the best one have passed (``epoch`` is the last one run)."""
        return epoch - self.best_epoch >= self.patience


def seconds_since(started: float, device: torch.device) -> float:
    """Wall time since ``started`` (``time.perf_counter()``), once the GPU has finished what was queued."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def check_finite_losses(step_losses: torch.Tensor, epoch: int, model: str = "the model") -> None:
    """Raise a FloatingPointError naming the first batch whose loss was NaN/inf (one host sync per epoch)."""
    finite = torch.isfinite(step_losses).cpu()
    if not finite.all():
        batch = int(torch.nonzero(~finite).flatten()[0])
        raise FloatingPointError(
            f"training of {model} diverged in epoch {epoch + 1}, batch {batch + 1}: the loss is NaN/inf. "
            "Check the responses for extreme values, or lower learning_rate")


def largest_batch_that_fits(step, batch_size: int, device: torch.device) -> int:
    """On a GPU, try one training step's forward and backward (``step(batch_size)``); on running out of
    memory, halve the batch size (with a warning) until it fits. On the CPU, ``batch_size`` as is."""
    if device.type != "cuda":
        return batch_size
    while True:
        try:
            step(batch_size)
            return batch_size
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            if batch_size <= 2:
                raise
            warnings.warn(f"GPU out of memory with batches of {batch_size} images; trying {batch_size // 2}",
                          stacklevel=2)
            batch_size //= 2


# ============================================================================ checkpoints
def run_fingerprint(config: ETECRMConfig, seed: int, data_hash: str) -> dict:
    """What must match for a checkpoint to be resumed: configuration (but for ``RESUMABLE_FIELDS``), seed, data."""
    settings = {k: v for k, v in config.to_dict().items() if k not in RESUMABLE_FIELDS}
    return {"config": settings, "seed": int(seed), "data": data_hash}


def load_checkpoint(path, fingerprint: dict) -> dict:
    """Read a checkpoint and refuse it (ValueError) unless it was written by the same run."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 -- any unreadable file gets the same clear message
        raise ValueError(f"{path} is not a readable ETECRM checkpoint ({err}); delete it to start afresh") from err
    old = ckpt.get("fingerprint", {}) if isinstance(ckpt, dict) else {}
    if old != fingerprint:
        diffs = [f"{k}: {old.get('config', {}).get(k)!r} in the checkpoint, {v!r} now"
                 for k, v in fingerprint["config"].items() if old.get("config", {}).get(k) != v]
        if old.get("seed") != fingerprint["seed"]:
            diffs.append(f"seed: {old.get('seed')} in the checkpoint, {fingerprint['seed']} now")
        if old.get("data") != fingerprint["data"]:
            diffs.append("training data differ")
        raise ValueError(f"checkpoint {path} comes from a different run ({'; '.join(diffs) or 'unknown format'}); "
                         "use another checkpoint path or delete this file to start afresh")
    return ckpt


def clone_state(net: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


# ============================================================================ the trainer
def train_etecrm(dataset, roi: str, config: ETECRMConfig | None = None, seed: int = 0, device=None,
                 checkpoint=None, progress: bool = True) -> TrainedModel:
    """Train ETECRM on the train split of one ROI of an ``EncodingDataset`` (the test split is not read).

    See :func:`fit_etecrm` for the arguments; the returned model knows its ROI, so
    ``model.score(dataset)`` gives the held-out ``EncodingResult``.
    """
    dataset.check_roi(roi)
    model = fit_etecrm(dataset.train.stimuli, dataset.train.responses[roi], config, seed, device, checkpoint,
                       progress, description=f"ETECRM {roi}")
    model.roi = roi
    return model


def fit_etecrm(images, responses, config: ETECRMConfig | None = None, seed: int = 0, device=None,
               checkpoint=None, progress: bool = True, description: str = "ETECRM") -> TrainedModel:
    """Train one ETECRM network on training arrays.

    images : ``(N, H, W)`` in [0, 1], square (resized to ``config.image_size``)
    responses : ``(N, V)`` responses of the V voxels of one ROI (must be finite)
    config : :class:`ETECRMConfig` (default: the full profile)
    seed : initial weights, validation split, batch order and noise all follow from it
    device : None = GPU if present (``device.get_device``)
    checkpoint : path of a checkpoint file: written (atomically) after every epoch, and if it exists
        when called, training continues from it (refused if it comes from another configuration,
        seed or data; ``epochs`` and ``patience`` may change, e.g. to train longer)
    """
    config = config or ETECRMConfig()
    device = get_device(device)
    x_all = prepare_images(images, config.image_size)
    y_all = check_responses(responses, x_all.shape[0])
    fit_idx, val_idx = split_train_val(x_all.shape[0], config.val_fraction, seed)
    n_voxels = y_all.shape[1]
    fingerprint = run_fingerprint(config, seed, data_fingerprint(x_all, y_all)) if checkpoint else None

    # the data live on the GPU when they fit; batches are gathered there
    data_device = device if fits_on_device(x_all.numel() * 4, device) else torch.device("cpu")
    x_fit, y_fit = x_all[fit_idx].to(data_device), y_all[fit_idx].to(device)
    x_val, y_val = x_all[val_idx].to(data_device), y_all[val_idx].to(device)
    n_fit = x_fit.shape[0]

    net = config.build_network(n_voxels, seed).to(device)
    if config.loss == "corr":
        # r is blind to each voxel's offset: the bias gets no gradient but rounding noise, which Adam would
        # blow up to steps of learning_rate size; it stays 0 (predictions are in arbitrary units then)
        net.readout.bias.requires_grad_(False)
    params = [p for p in net.parameters() if p.requires_grad]
    graphed = use_cuda_graph(config, device, data_device)
    optimizer = make_optimizer(params, config, device, capturable=graphed)
    shuffle_gen, noise_gen = make_generators(seed, device)
    weights = torch.ones(n_voxels, device=device)

    def training_loss(xb, yb, noise=None, mask=None):
        with autocast(device, config.mixed_precision):
            pred = net(xb, noise, mask)
        return encoding_loss(config.loss, pred.float(), yb, weights)

    def try_step(b):                      # forward + backward only: no update, no random numbers used
        net.train()
        training_loss(x_fit[:b].to(device), y_fit[:b]).backward()
        net.zero_grad(set_to_none=True)

    batch_size = largest_batch_that_fits(try_step, clamp_batch_size(config.batch_size, n_fit), device)
    n_steps = n_fit // batch_size         # the last incomplete batch is dropped (a new order every epoch)

    history = TrainingHistory(batch_size=batch_size, device=describe_device(device))
    stopper = EarlyStopping(config.patience)
    best_state, best_weights, best_val_r = clone_state(net), weights.clone(), torch.zeros(n_voxels, device=device)
    start_epoch = 0
    if checkpoint is not None and Path(checkpoint).exists():
        ckpt = load_checkpoint(checkpoint, fingerprint)
        net.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        shuffle_gen.set_state(ckpt["shuffle_generator"])
        noise_gen.set_state(ckpt["noise_generator"])
        weights.copy_(ckpt["weights"])
        best_state = {k: v.to(device) for k, v in ckpt["best_model"].items()}
        best_weights, best_val_r = ckpt["best_weights"].to(device), ckpt["best_val_r"].to(device)
        stopper = EarlyStopping(config.patience, ckpt["best_score"], ckpt["best_epoch"])
        history = TrainingHistory(**ckpt["history"])
        history.voxel_weights = [w.numpy() for w in ckpt["history"]["voxel_weights"]]
        start_epoch = history.n_epochs
        history.stopped_early = stopper.should_stop(start_epoch - 1)   # patience may have changed
        batch_size, n_steps = history.batch_size, n_fit // history.batch_size

    # each step copies its batch into these buffers (a CUDA graph replays the same addresses)
    batch_idx = torch.zeros(batch_size, dtype=torch.long, device=data_device)
    noise_buf = torch.zeros(batch_size, 1, config.image_size, config.image_size, device=device) if config.noise_std else None
    mask_buf = torch.ones(batch_size, net.n_features, device=device) if config.dropout else None

    def train_step():
        loss = training_loss(x_fit[batch_idx].to(device, non_blocking=True), y_fit[batch_idx.to(device)],
                             noise_buf, mask_buf)
        loss.backward()
        optimizer.step()
        return loss.detach()

    run_step = step_runner(train_step, params, optimizer, device, graphed)

    bar = tqdm(range(start_epoch, config.epochs), desc=description, disable=not progress, leave=False)
    for epoch in bar:
        if history.stopped_early:
            break
        started = time.perf_counter()
        # 1. this epoch's order and noise
        net.train()
        order = torch.randperm(n_fit, generator=shuffle_gen)[: n_steps * batch_size].to(data_device)
        noise, mask = draw_epoch_noise(config, n_steps * batch_size, net.n_features, noise_gen, device)
        # 2. one pass over the fitting images; losses stay on the device until the epoch ends
        step_losses = torch.zeros(n_steps, device=device)
        for step in range(n_steps):
            rows = slice(step * batch_size, (step + 1) * batch_size)
            batch_idx.copy_(order[rows])
            if noise is not None:
                noise_buf.copy_(noise[rows])
            if mask is not None:
                mask_buf.copy_(mask[rows])
            step_losses[step] = run_step()
        check_finite_losses(step_losses, epoch)
        # 3. validation r per voxel, and the self-adapting voxel weights
        val_r = batch_pearson_r(predict_tensor(net, x_val, device, 256, config.mixed_precision), y_val)
        if config.voxel_weights:
            weights.copy_(voxel_weights_from_r(val_r, config.weight_power))
        history.record(step_losses.mean(), val_r, weights, seconds_since(started, device))
        # 4. early stopping on the mean validation r
        if stopper.update(history.val_mean_r[-1], epoch):
            best_state, best_weights, best_val_r = clone_state(net), weights.clone(), val_r.clone()
        history.best_epoch = stopper.best_epoch
        history.stopped_early = stopper.should_stop(epoch)
        bar.set_postfix(loss=f"{history.train_loss[-1]:.4f}", val_median_r=f"{history.val_median_r[-1]:.3f}",
                        best=stopper.best_epoch + 1)
        if checkpoint is not None:
            save_checkpoint(checkpoint, fingerprint, net, optimizer, shuffle_gen, noise_gen, weights,
                            best_state, best_weights, best_val_r, stopper, history)
    bar.close()

    net.load_state_dict(best_state)
    net.eval()
    return TrainedModel(net, config, seed, history, best_weights.float().cpu().numpy(), best_val_r.float().cpu().numpy())


def save_checkpoint(path, fingerprint, net, optimizer, shuffle_gen, noise_gen, weights, best_state, best_weights,
                    best_val_r, stopper: EarlyStopping, history: TrainingHistory) -> None:
    """Everything needed to continue a run exactly, written atomically with ``torch.save``."""
    hist = {f.name: getattr(history, f.name) for f in fields(history)}
    hist["voxel_weights"] = [torch.as_tensor(w) for w in history.voxel_weights]
    payload = {
        "fingerprint": fingerprint,
        "model": clone_state(net), "optimizer": optimizer.state_dict(),
        "shuffle_generator": shuffle_gen.get_state(), "noise_generator": noise_gen.get_state().cpu(),
        "weights": weights.cpu(), "best_model": {k: v.cpu() for k, v in best_state.items()},
        "best_weights": best_weights.cpu(), "best_val_r": best_val_r.cpu(),
        "best_score": stopper.best_score, "best_epoch": stopper.best_epoch, "history": hist,
    }
    with atomic_write(path) as tmp:
        torch.save(payload, tmp)
