"""M ETECRM networks of one shape as one network: their weights stacked along a first axis.

:class:`StackedNet` computes the M networks of ``models.ETECRMNet``'s shape at once; the batched
trainer (``batched.py``) trains it. The read-outs are one **batched matrix product** per
:class:`Block` of models with the same voxels, loss and read-out kind. The convolutions can be
computed in several ways (:data:`CONV_MODES`; the same numbers up to the order of sums, each
tested against the networks trained alone, ``tests/test_batched.py``):

- ``"grouped"``: one grouped convolution per layer, model m's channels are group m. On an H100
  cuDNN runs the 128-channel groups one at a time and slices each out of the channels-last tensor
  (``benchmarks/bench_batched.py``).
- ``"loop"``: the models' images stacked along the batch axis, ``(M*B, 1, S, S)``; each model's
  layers computed one after another on its own contiguous rows, as ``ETECRMNet`` computes them
  (cuDNN; no slicing copies, no concatenation; M launches per layer, which a CUDA graph replays
  without launch gaps).
- ``"unfold"``: the same layout; each layer of every model as one matrix product of its image
  patches (im2col, :func:`unfold_conv`) with its weights, all models in one batched product.
- ``"loop-unfold"``: one cuDNN convolution per model for the first layer (:func:`conv_per_model`;
  one input channel: 9-long patches), then ``"unfold"``.

:func:`build_networks` builds the M networks in threads, each from its own random generator: the
same initial weights as ``ETECRMConfig.build_network``, bit for bit.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .models import INIT_RANGE, ETECRMNet, scale_images

FUSED_SQUARE = True  # the read-out's W * W squared straight into bf16 (SquareInto)
CONV_MODES = ("grouped", "loop", "unfold", "loop-unfold")
BUILD_THREADS = 16  # networks built at once (their initial weights are drawn on the CPU)


@dataclass(frozen=True)
class Block:
    """Models ``start:stop`` of a stacked network: same voxels, loss, mean penalty, read-out."""

    start: int
    stop: int
    n_voxels: int
    loss: str
    mean_penalty: float
    squared: bool


def stacked_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """M convolution layers at once, as one grouped convolution (model m reads and writes its own
    channels): ``x (B, M*Cin, S, S)``, ``weight (M, C, Cin, 3, 3)``, ``bias (M, C)`` ->
    ``(B, M*C, S/2, S/2)``."""
    m = weight.shape[0]
    return F.conv2d(x, weight.flatten(0, 1), bias.flatten(), stride=2, padding=1, groups=m)


def conv_per_model(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """M convolution layers, one per model on its own rows: ``x (M*B, Cin, S, S)`` (model m's
    images in rows ``m*B:(m+1)*B``), ``weight (M, C, Cin, 3, 3)``, ``bias (M, C)`` ->
    ``(M*B, C, S/2, S/2)``. ``chunk``, whose gradient is one concatenation, not M zero-filled
    copies as row slicing would make."""
    pieces = zip(x.chunk(weight.shape[0]), weight.unbind(0), bias.unbind(0))
    return torch.cat([F.conv2d(xi, w, b, stride=2, padding=1) for xi, w, b in pieces])


def unfold_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """M convolution layers (3 x 3, stride 2, padding 1) as one batched matrix product (im2col):
    ``x (M*B, Cin, S, S)`` as :func:`conv_per_model` -> ``(M*B, C, S/2, S/2)`` (channels-last
    strides). Each output pixel's 3 x 3 x Cin patch is one row of model m's matrix ``(B*S/2*S/2,
    Cin*9)``, which meets the weights ``(Cin*9, C)``. With stride 2 and an even side the window
    never passes the last row or column: a zero row above and a zero column on the left are the
    only padding needed."""
    m, c_out, c_in = weight.shape[:3]
    half = x.shape[-1] // 2
    padded = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, 0, 1, 0))  # (M*B, S+1, S+1, Cin)
    patches = padded.unfold(1, 3, 2).unfold(2, 3, 2)  # (M*B, S/2, S/2, Cin, 3, 3), a view
    cols = patches.reshape(m, -1, c_in * 9)  # (M, B*S/2*S/2, Cin*9), rows in model order
    kernel = weight.reshape(m, c_out, c_in * 9).transpose(1, 2)  # (M, Cin*9, C)
    out = torch.baddbmm(bias.unsqueeze(1), cols, kernel)  # (M, B*S/2*S/2, C)
    return out.view(x.shape[0], half, half, c_out).permute(0, 3, 1, 2)


def layer_function(conv: str, layer: int):
    """The function computing layer ``layer`` (0-based) in mode ``conv`` (:data:`CONV_MODES`)."""
    if conv == "grouped":
        return stacked_conv
    if conv == "loop-unfold" and layer == 0:
        return conv_per_model
    return unfold_conv


def check_conv(conv: str) -> str:
    """``conv`` if it is one of :data:`CONV_MODES`, else a ValueError that lists them."""
    if conv not in CONV_MODES:
        raise ValueError(f"conv must be one of {CONV_MODES}, got {conv!r}")
    return conv


class SquareInto(torch.autograd.Function):
    """``(W * W)`` written straight in a low precision (bf16/fp16) for the read-out's product: one
    pass over ``W`` instead of a float32 square and a cast. The same numbers as autocast's cast of
    ``W * W`` (one rounding of the float32 product), and the same gradient, ``2 g W`` in float32
    (``g W + g W`` is exactly ``(2 g) W``), in one pass too (``addcmul``: ``0 + 2 g W``; a factor
    2 changes no rounding)."""

    @staticmethod
    def forward(ctx, weight, dtype):
        ctx.save_for_backward(weight)
        return torch.mul(weight, weight, out=torch.empty_like(weight, dtype=dtype))

    @staticmethod
    def backward(ctx, grad):
        (weight,) = ctx.saved_tensors
        return torch.addcmul(weight.new_zeros(()), grad, weight, value=2), None


class StackedNet(nn.Module):
    """M networks of ``models.ETECRMNet``'s shape as one: their weights stacked along a first axis.

    ``nets``: the M networks (same image size, channels, layers); ``blocks``: :class:`Block` s that
    cover ``0..M`` in order; ``conv``: how to compute the convolutions (:data:`CONV_MODES`).
    Forward: images ``(M, B, S, S)`` (model m's batch in row m) -> one prediction ``(stop - start,
    B, V)`` per block, model m's equal to ``nets[m](images[m])``.
    """

    def __init__(self, nets: list, blocks: list, conv: str = "grouped"):
        super().__init__()
        convs = [[layer for layer in net.features if isinstance(layer, nn.Conv2d)] for net in nets]
        self.conv_weights = nn.ParameterList(
            nn.Parameter(torch.stack([c[i].weight.detach() for c in convs]))
            for i in range(len(convs[0]))
        )
        self.conv_biases = nn.ParameterList(
            nn.Parameter(torch.stack([c[i].bias.detach() for c in convs]))
            for i in range(len(convs[0]))
        )
        self.weights = nn.ParameterList(
            nn.Parameter(torch.stack([n.weight.detach() for n in nets[b.start : b.stop]]))
            for b in blocks
        )
        self.biases = nn.ParameterList(
            nn.Parameter(torch.stack([n.bias.detach() for n in nets[b.start : b.stop]]))
            for b in blocks
        )
        self.blocks, self.n_models = list(blocks), len(nets)
        self.conv, self.channels_last = check_conv(conv), False

    def forward(self, images: torch.Tensor) -> list:
        m, b, side = images.shape[0], images.shape[1], images.shape[-1]
        x = scale_images(images.reshape(m * b, 1, side, side))  # (M*B, 1, S, S)
        if self.conv == "grouped":
            x = x.reshape(m, b, side, side).transpose(0, 1)  # (B, M, S, S): model m is channel m
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.conv == "loop":
            features = self.features_one_by_one(x)
        else:
            for i, (weight, bias) in enumerate(zip(self.conv_weights, self.conv_biases)):
                x = F.relu(layer_function(self.conv, i)(x, weight, bias))
        if self.conv == "grouped":  # (M, B, F), each model's C x s x s in order
            features = x.reshape(b, m, -1).transpose(0, 1)
        elif self.conv != "loop":
            features = x.reshape(m, b, -1)
        out = []  # split: its gradient is one concatenation, not a zero-filled copy per block
        pieces = features.split([block.stop - block.start for block in self.blocks])
        for block, mine, weight, bias in zip(self.blocks, pieces, self.weights, self.biases):
            offset = bias.unsqueeze(1)
            if mine.dtype == torch.float16:  # float16 autocast: the read-out in float32 (models.py)
                used = weight * weight if block.squared else weight
                with torch.autocast(mine.device.type, enabled=False):
                    out.append(torch.bmm(mine.float(), used.float()) + offset)
            elif block.squared and FUSED_SQUARE and mine.dtype == torch.bfloat16:
                out.append(torch.bmm(mine, SquareInto.apply(weight, mine.dtype)) + offset)
            else:
                out.append(torch.bmm(mine, weight * weight if block.squared else weight) + offset)
        return out

    def features_one_by_one(self, x: torch.Tensor) -> torch.Tensor:
        """Mode "loop": images ``(M*B, 1, S, S)`` -> features ``(M, B, F)``, each model's layers
        one after another on its own rows, as ``ETECRMNet`` computes them (``unbind``: one
        gradient per stacked weight, not M zero-filled copies)."""
        weights = [w.unbind(0) for w in self.conv_weights]
        biases = [b.unbind(0) for b in self.conv_biases]
        features = []
        for i, xi in enumerate(x.chunk(self.n_models)):
            for w, b in zip(weights, biases):
                xi = F.relu(F.conv2d(xi, w[i], b[i], stride=2, padding=1))
            features.append(xi.flatten(1))
        return torch.stack(features)

    def slices(self) -> list:
        """``(parameter, its first model, its name in ETECRMNet)``, in ``parameters()`` order."""
        out = []
        for i, p in enumerate(self.conv_weights):
            out.append((p, 0, f"features.{2 * i}.weight"))
        for i, p in enumerate(self.conv_biases):
            out.append((p, 0, f"features.{2 * i}.bias"))
        out += [(p, b.start, "weight") for p, b in zip(self.weights, self.blocks)]
        out += [(p, b.start, "bias") for p, b in zip(self.biases, self.blocks)]
        return out

    def state_of(self, model: int, tensors: list) -> dict:
        """The ``ETECRMNet`` state dict of one model from ``tensors`` (as :meth:`slices`)."""
        state = {}
        for (p, first, name), t in zip(self.slices(), tensors):
            if first <= model < first + p.shape[0]:
                state[name] = t[model - first].detach().clone()
        return state


def build_network(config, n_voxels: int, seed: int) -> ETECRMNet:
    """``config.build_network(n_voxels, seed)`` (``config``: a ``training.ETECRMConfig``): the
    same initial weights, bit for bit (tested), but
    drawn from a generator of its own instead of the global one, so that several networks can be
    built at once in threads (drawing 26 M weights on the CPU takes about 0.2 s per network).

    It follows the order of ``ETECRMNet``'s draws: each convolution's weights (``nn.Conv2d``'s
    Kaiming-uniform) and bias, then the read-out's ``W`` and ``b``."""
    generator = torch.Generator().manual_seed(seed)
    with torch.device("meta"):  # the shapes only, no draws
        net = ETECRMNet(
            n_voxels, config.image_size, config.channels, config.n_layers, config.readout_weights
        )
    for module in net.modules():  # CPU memory (not to_empty: its first call takes seconds)
        for name, p in list(module.named_parameters(recurse=False)):
            setattr(module, name, nn.Parameter(torch.empty(p.shape)))
    with torch.no_grad():
        for layer in net.features:
            if isinstance(layer, nn.Conv2d):
                nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
                bound = 1 / math.sqrt(layer.weight[0].numel())  # 1 / sqrt(fan in)
                layer.bias.uniform_(-bound, bound, generator=generator)
        net.weight.uniform_(-INIT_RANGE, INIT_RANGE, generator=generator)
        net.bias.uniform_(-INIT_RANGE, INIT_RANGE, generator=generator)
    return net


def build_networks(specs: list, device: torch.device) -> list:
    """One network per ``(config, n_voxels, seed)`` of ``specs`` (:func:`build_network`), on
    ``device``, built in up to :data:`BUILD_THREADS` threads."""

    def build(spec):
        return build_network(*spec).to(device)

    threads = max(1, min(BUILD_THREADS, os.cpu_count() or 1, len(specs)))
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(build, specs))
