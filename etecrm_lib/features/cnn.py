"""Activations of the layers of a (pretrained) torchvision CNN as image features.

The recipe of the two-step CNN models (e.g. Güçlü & van Gerven 2015): show each stimulus to a
network trained on ImageNet, record the activations of several layers, and regress each voxel on
them. Here:

1. Grayscale images ``(N, H, W)`` in [0, 1] are copied into 3 channels, resized to ``input_size``
   (224 for ImageNet networks) and normalised with the ImageNet mean and s.d.
2. Forward hooks on the chosen layers (names as in ``model.named_modules()``, e.g. AlexNet's
   ``"features.1"`` = ReLU of conv1) record their outputs; the forward pass stops after the last
   one.
3. Convolutional maps are average-pooled to ``pool_size x pool_size`` per channel (a coarse
   retinotopy) and flattened. Optionally, :class:`CNNFeatures` reduces each layer further with PCA
   or a random projection **fitted on the training images only**.

Weights (``CNNConfig.weights``) and provenance (the ``weights`` string every result carries):

- ``"DEFAULT"`` or a torchvision weight name (``"IMAGENET1K_V1"``): downloaded by torchvision on
  first use (Colab, a laptop) and cached in ``~/.cache/torch``; recorded as e.g.
  ``"IMAGENET1K_V1"``.
- a path to a ``.pth`` state dict: recorded as ``"file:<path> sha256:<hex>"``.
- ``None``: an **untrained** network, randomly initialised with ``seed``: ``"untrained(seed=0)"``.
  Without internet and without a local file this is the only choice, and it must be asked for
  explicitly: a failed download is an error that says so.
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import tqdm.auto

from ..device import get_device
from ..profiles import DEFAULT_PROFILE, Profile, check_profile
from ..storage import CorruptFileError, sha256_file
from .cache import cache_key, read_cache, write_cache
from .gabor import check_images

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The ReLU outputs of AlexNet's 5 convolutional and 2 hidden fully connected layers.
ALEXNET_LAYERS = {
    "conv1": "features.1",
    "conv2": "features.4",
    "conv3": "features.7",
    "conv4": "features.9",
    "conv5": "features.11",
    "fc6": "classifier.2",
    "fc7": "classifier.5",
}
DEFAULT_LAYERS = {"alexnet": tuple(ALEXNET_LAYERS.values())}


@dataclass(frozen=True)
class CNNConfig:
    """Which network, which layers, which weights, and how to shrink the activations.

    model : a torchvision classification model name (``torchvision.models.list_models()``)
    layers : module names (``named_modules()``); None = the model's default (AlexNet: conv1..fc7
        ReLUs)
    weights : "DEFAULT", a torchvision weight name, a path to a .pth state dict, or None (untrained)
    seed : random initialisation of an untrained network (and of the random projection)
    input_size : images are resized to input_size x input_size pixels
    pool_size : convolutional maps are average-pooled to pool_size x pool_size
    reduction : None, "pca" or "random" (fitted on training images only, see CNNFeatures)
    n_components : dimensions kept per layer by the reduction
    batch_size : images per forward pass
    """

    model: str = "alexnet"
    layers: tuple | None = None
    weights: str | None = "DEFAULT"
    seed: int = 0
    input_size: int = 224
    pool_size: int = 6
    reduction: str | None = None
    n_components: int = 1000
    batch_size: int = 32

    @classmethod
    def for_profile(cls, profile: Profile = DEFAULT_PROFILE, **changes) -> "CNNConfig":
        """quick: 112-px input, 3x3 pooling (fast on a CPU); full: 224 px, 6x6 (AlexNet's own
        pooling)."""
        if check_profile(profile) == "quick":
            return cls(**{"input_size": 112, "pool_size": 3, **changes})
        return cls(**changes)

    def layer_list(self) -> tuple:
        if self.layers is not None:
            return tuple(self.layers)
        if self.model not in DEFAULT_LAYERS:
            raise ValueError(
                f"no default layers for model '{self.model}': give CNNConfig(layers=...) "
                f"with names from etecrm_lib.features.layer_names('{self.model}')"
            )
        return DEFAULT_LAYERS[self.model]


# ---------------------------------------------------------------------- the network and its weights
def _build(model: str, seed: int):
    import torchvision

    with torch.random.fork_rng(devices=[]):  # seeded initialisation, global RNG untouched
        torch.manual_seed(seed)
        try:
            return torchvision.models.get_model(model, weights=None)
        except ValueError:
            known = torchvision.models.list_models(module=torchvision.models)
            raise ValueError(
                f"unknown torchvision model '{model}'; classification models: {known}"
            ) from None


def load_cnn(model: str = "alexnet", weights: str | None = "DEFAULT", seed: int = 0):
    """The network in eval mode and a string saying which weights it has. See the module
    docstring."""
    import torchvision

    net = _build(model, seed)
    if weights is None:
        return net.eval(), f"untrained(seed={seed})"
    if os.path.exists(str(weights)) or str(weights).endswith((".pth", ".pt")):
        path = Path(weights)
        if not path.exists():
            raise FileNotFoundError(f"no weights file at {path}")
        try:  # weights_only: tensors only, never pickled code
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # a text file, a pickle of objects, a damaged file...
            raise CorruptFileError(
                f"{path} is not a weights file etecrm can read ({type(err).__name__}): it must "
                "hold only tensors, e.g. written by torch.save(model.state_dict(), path). "
                "Files holding other Python objects are never loaded, as they can run code"
            ) from None
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        try:
            net.load_state_dict(state)
        except Exception as err:
            raise CorruptFileError(
                f"the weights in {path} do not fit torchvision's '{model}': "
                f"{str(err).splitlines()[0][:300]}"
            ) from None
        return net.eval(), f"file:{path} sha256:{sha256_file(path)}"
    available = torchvision.models.get_model_weights(model)
    try:
        enum = available.DEFAULT if weights == "DEFAULT" else available[weights]
    except KeyError:
        raise ValueError(
            f"unknown weights '{weights}' for {model}; choose one of "
            f"{list(available.__members__)}, "
            "a path to a .pth file, or None"
        ) from None
    try:  # torch prints 'Downloading: "<url>" to <cache path>' on stdout: kept off the pages
        with contextlib.redirect_stdout(io.StringIO()):  # (its progress bar, on stderr, stays)
            state = torch.hub.load_state_dict_from_url(enum.url, progress=True, check_hash=True)
    except Exception as err:  # no internet, proxy, disk full ...: all end the same way for the user
        raise RuntimeError(
            f"could not get the pretrained {model} weights '{enum.name}' "
            f"({type(err).__name__}: {err}).\n"
            "  - with internet (e.g. Colab), weights='DEFAULT' downloads them once into "
            "~/.cache/torch;\n"
            f"  - offline, download {enum.url} elsewhere and pass weights='path/to/file.pth';\n"
            "  - or pass weights=None explicitly for an UNTRAINED (randomly initialised, "
            "seeded) network."
        ) from err
    net.load_state_dict(state)
    return net.eval(), enum.name


def layer_names(model: str = "alexnet") -> list:
    """The module names of a torchvision model that can be used as ``layers``."""
    return [name for name, _ in _build(model, 0).named_modules() if name]


def check_layers(net: torch.nn.Module, layers, model: str = "") -> None:
    """Raise a ValueError listing the valid names if any requested layer is not a module of
    ``net``."""
    valid = [name for name, _ in net.named_modules() if name]
    unknown = [layer for layer in layers if layer not in valid]
    if unknown:
        raise ValueError(
            f"unknown layer name(s) {unknown} for {model or type(net).__name__}; valid "
            f"names: {valid}"
        )


# ----------------------------------------------------------------------------- activations
def preprocess(images: torch.Tensor, input_size: int) -> torch.Tensor:
    """Grayscale ``(B, H, W)`` in [0, 1] -> ImageNet-normalised ``(B, 3, input_size,
    input_size)``."""
    x = F.interpolate(
        images[:, None],
        size=(input_size, input_size),
        mode="bilinear",
        antialias=True,
        align_corners=False,
    ).clamp(0, 1)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device)[None, :, None, None]
    std = torch.tensor(IMAGENET_STD, device=x.device)[None, :, None, None]
    return (x.expand(-1, 3, -1, -1) - mean) / std


class _StopForward(Exception):
    pass


def layer_activations(
    net,
    images: np.ndarray,
    layers,
    input_size: int,
    pool_size: int,
    batch_size: int = 32,
    device=None,
    progress: bool = True,
) -> dict:
    """Pooled, flattened activations ``{layer: float32 (N, D)}`` of ``net`` for images ``(N, H,
    W)``."""
    device = get_device(device)
    net = net.to(device).eval()
    check_layers(net, layers)
    modules = dict(net.named_modules())
    store = {}

    def hook_for(name):
        def hook(module, inputs, output):
            out = output.detach()
            if out.ndim == 4:
                out = F.adaptive_avg_pool2d(out, pool_size)
            store[name] = (
                out.flatten(1).float().cpu().clone()
            )  # clone: a later in-place ReLU must not change it
            if len(store) == len(
                layers
            ):  # every requested layer seen: skip the rest of the network
                raise _StopForward

        return hook

    handles = [modules[name].register_forward_hook(hook_for(name)) for name in layers]
    out = {name: [] for name in layers}
    try:
        with torch.no_grad():
            for start in tqdm.auto.tqdm(
                range(0, len(images), batch_size),
                desc="CNN layers",
                disable=not progress,
                leave=False,
            ):
                batch = torch.as_tensor(images[start : start + batch_size], device=device)
                try:
                    net(preprocess(batch, input_size))
                except _StopForward:
                    pass
                for name in layers:
                    out[name].append(store.pop(name))
    finally:
        for handle in handles:
            handle.remove()
    return {name: torch.cat(chunks).numpy() for name, chunks in out.items()}


def cnn_features(
    images,
    config: CNNConfig | None = None,
    device=None,
    cache: bool = True,
    progress: bool = True,
    net=None,
    weights_info: str | None = None,
):
    """Pooled activations of the configured layers: returns ``({layer: float32 (N, D)}, weights)``.

    ``weights`` says which weights produced them (see the module docstring). Cached on disk per
    layer, keyed by model, weights, layers, sizes and the images. ``net`` / ``weights_info`` reuse a
    network already loaded with :func:`load_cnn`.
    """
    config = config or CNNConfig()
    images = check_images(images)
    layers = config.layer_list()
    if net is None:
        net, weights_info = load_cnn(config.model, config.weights, config.seed)
    check_layers(net, layers, config.model)
    settings = {
        "model": config.model,
        "weights": weights_info,
        "input_size": config.input_size,
        "pool_size": config.pool_size,
    }
    keys = {layer: cache_key({**settings, "layer": layer}, images) for layer in layers}
    found = (
        {layer: read_cache("cnn", keys[layer], len(images)) for layer in layers} if cache else {}
    )
    missing = [layer for layer in layers if found.get(layer) is None]
    if missing:
        computed = layer_activations(
            net,
            images,
            missing,
            config.input_size,
            config.pool_size,
            config.batch_size,
            device,
            progress,
        )
        for layer in missing:
            found[layer] = computed[layer]
            if cache:
                write_cache("cnn", keys[layer], computed[layer])
    return {layer: found[layer] for layer in layers}, weights_info


class CNNFeatures:
    """CNN layer features with an optional per-layer reduction fitted on training images only.

    >>> extractor = CNNFeatures(CNNConfig(weights=None)).fit(ds.train.stimuli)
    >>> train = extractor.transform(ds.train.stimuli)     # {layer: (N_train, D)}
    >>> test = extractor.transform(ds.test.stimuli)       # same reduction, never refitted
    >>> extractor.weights                                 # e.g. "untrained(seed=0)"
    """

    def __init__(
        self,
        config: CNNConfig | None = None,
        device=None,
        progress: bool = True,
        cache: bool = True,
    ):
        self.config = config or CNNConfig()
        if self.config.reduction not in (None, "pca", "random"):
            raise ValueError(
                f"reduction must be None, 'pca' or 'random', got {self.config.reduction!r}"
            )
        self.device, self.progress, self.cache = device, progress, cache
        self.net, self.weights = load_cnn(self.config.model, self.config.weights, self.config.seed)
        check_layers(self.net, self.config.layer_list(), self.config.model)
        self.projections = None  # {layer: (mean (D,), matrix (D, k))} once fitted

    def activations(self, images) -> dict:
        return cnn_features(
            images, self.config, self.device, self.cache, self.progress, self.net, self.weights
        )[0]

    def fit(self, train_images) -> "CNNFeatures":
        """Fit the reduction (PCA: on the training activations; random: a seeded Gaussian
        matrix)."""
        self.projections = {}
        if self.config.reduction is None:
            return self
        acts = self.activations(train_images)
        gen = torch.Generator().manual_seed(self.config.seed)
        for layer, a in acts.items():
            a = torch.as_tensor(a, dtype=torch.float64)
            k = min(self.config.n_components, a.shape[1])
            mean = a.mean(0)
            if self.config.reduction == "pca":
                k = min(k, a.shape[0] - 1)
                _, _, vt = torch.linalg.svd(a - mean, full_matrices=False)
                matrix = vt[:k].T
            else:
                matrix = torch.randn(a.shape[1], k, generator=gen, dtype=torch.float64) / k**0.5
            self.projections[layer] = (mean.float(), matrix.float())
        return self

    def transform(self, images) -> dict:
        """``{layer: float32 (N, D_layer)}`` for any images, with the reduction fitted by
        :meth:`fit`."""
        if self.projections is None:
            raise RuntimeError("call fit(train_images) before transform(...)")
        acts = self.activations(images)
        if not self.projections:
            return acts
        return {
            layer: (
                (torch.as_tensor(a) - self.projections[layer][0]) @ self.projections[layer][1]
            ).numpy()
            for layer, a in acts.items()
        }
