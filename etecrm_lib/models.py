"""The ETECRM network: a small CNN trained from scratch, with one output unit per voxel of an ROI.

Our reading of the paper (PAPER.md): convolutional feature layers, learned from the fMRI data
itself, followed by a fully connected regression layer with one unit per voxel of the ROI. The
paper gives no layer sizes; our choices, all switchable in ``training.ETECRMConfig``:

- ``len(channels)`` conv blocks, each ``Conv2d(stride 2) -> ReLU``: the first with a
  ``first_kernel`` x ``first_kernel`` kernel (default 5), the others 3 x 3. Every block halves the
  image side, so a 128 x 128 image gives a ``(channels[-1], 8, 8)`` feature map with 4 blocks.
  Strided convolutions instead of pooling keep the network cheap (fewer, larger kernels).
  No batch normalisation: its running statistics would make "many models at once" (``batched.py``,
  ``torch.func.vmap``) and predictions depend on the batch.
- ``readout="dense"`` (the paper's default): a fully connected layer from the flattened features
  ``F = C * S`` (S = spatial positions) to the V voxels: ``pred = feats @ W.T + b``, W ``(V, F)``.
- ``readout="factorized"`` (Klindt et al. 2017): each voxel reads the feature map through a
  spatial mask ``m_v (S,)`` times feature weights ``w_v (C,)``: ``pred_v = sum_cs f_cs m_vs w_vc + b_v``;
  ``V * (S + C)`` parameters instead of ``V * C * S``.

Randomness is explicit: the network never draws random numbers itself. The trainer draws the
input noise (noise regularization) and the dropout mask from its own seeded generator and passes
them in; with neither given (evaluation), the network is deterministic. That is what makes batched
training draw for each model exactly what training it alone would.

Every readout parameter has the voxel axis first (``batched.py`` pads ROIs to a common V on it).
"""

from __future__ import annotations

import math

import torch
from torch import nn

READOUTS = ("dense", "factorized")


class DenseReadout(nn.Module):
    """Fully connected regression: features ``(B, F)`` -> responses ``(B, V)``."""

    def __init__(self, n_features: int, n_voxels: int):
        super().__init__()
        bound = 1.0 / math.sqrt(n_features)
        self.weight = nn.Parameter(torch.empty(n_voxels, n_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(n_voxels))

    def forward(self, features: torch.Tensor, feature_shape: tuple) -> torch.Tensor:
        return features @ self.weight.t() + self.bias


class FactorizedReadout(nn.Module):
    """Spatial mask x feature weights per voxel (Klindt et al. 2017): ``(B, C*S)`` -> ``(B, V)``."""

    def __init__(self, n_channels: int, n_positions: int, n_voxels: int):
        super().__init__()
        self.spatial = nn.Parameter(torch.randn(n_voxels, n_positions) / n_positions)
        self.feature = nn.Parameter(torch.randn(n_voxels, n_channels) / math.sqrt(n_channels))
        self.bias = nn.Parameter(torch.zeros(n_voxels))

    def forward(self, features: torch.Tensor, feature_shape: tuple) -> torch.Tensor:
        n_channels, n_positions = feature_shape[0], feature_shape[1] * feature_shape[2]
        maps = features.reshape(features.shape[0], n_channels, n_positions)
        pooled = torch.einsum("bcs,vs->bvc", maps, self.spatial)        # each voxel's spatial pooling
        return (pooled * self.feature).sum(dim=-1) + self.bias


class ETECRMNet(nn.Module):
    """Images ``(B, H, W)`` or ``(B, 1, H, W)`` in [0, 1] -> predicted responses ``(B, V)``.

    Parameters
    ----------
    n_voxels : voxels of the ROI (output units)
    image_size : side of the (square) input images in pixels; must be divisible by ``2 ** len(channels)``
    channels : output channels of each conv block (its length is the depth)
    first_kernel : kernel side of the first conv block (odd)
    readout : ``"dense"`` (the paper's fully connected regression) or ``"factorized"``
    """

    def __init__(self, n_voxels: int, image_size: int = 128, channels=(32, 64, 64, 64), first_kernel: int = 5,
                 readout: str = "dense"):
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if n_voxels < 1:
            raise ValueError(f"the network needs at least one voxel to predict, got n_voxels={n_voxels}")
        if not channels or min(channels) < 1:
            raise ValueError(f"channels must be a non-empty list of positive widths, got {channels}")
        if image_size % 2 ** len(channels):
            raise ValueError(f"image_size {image_size} must be divisible by 2**{len(channels)} "
                             f"(each of the {len(channels)} conv blocks halves the side)")
        if first_kernel < 1 or first_kernel % 2 == 0:
            raise ValueError(f"first_kernel must be a positive odd number, got {first_kernel}")
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
        blocks, c_in = [], 1
        for i, c_out in enumerate(channels):
            k = first_kernel if i == 0 else 3
            blocks += [nn.Conv2d(c_in, c_out, k, stride=2, padding=k // 2), nn.ReLU()]
            c_in = c_out
        self.features = nn.Sequential(*blocks)
        side = image_size // 2 ** len(channels)
        self.image_size = image_size
        self.feature_shape = (c_in, side, side)
        self.n_features = c_in * side * side
        self.n_voxels = n_voxels
        if readout == "dense":
            self.readout = DenseReadout(self.n_features, n_voxels)
        else:
            self.readout = FactorizedReadout(c_in, side * side, n_voxels)

    def forward(self, images: torch.Tensor, input_noise: torch.Tensor | None = None,
                feature_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Predict responses.

        images : ``(B, H, W)`` or ``(B, 1, H, W)`` in [0, 1]; centred on mid-gray inside.
        input_noise : ``(B, 1, H, W)`` added to the centred images (noise regularization), or None
        feature_mask : ``(B, F)`` multiplied into the flattened features (dropout: 0 or 1/(1-p)), or None
        Returns ``(B, V)``.
        """
        if images.ndim == 3:
            images = images.unsqueeze(1)
        x = images - 0.5
        if input_noise is not None:
            x = x + input_noise
        features = self.features(x).flatten(1)
        if feature_mask is not None:
            features = features * feature_mask
        return self.readout(features, self.feature_shape)


def count_flops(net: ETECRMNet) -> int:
    """Multiply-adds x 2 of one forward pass of one image (convolutions and readout)."""
    flops, side = 0, net.image_size
    for layer in net.features:
        if isinstance(layer, nn.Conv2d):
            side = side // 2
            k = layer.kernel_size[0] * layer.kernel_size[1]
            flops += 2 * side * side * layer.out_channels * layer.in_channels * k
    c, s = net.feature_shape[0], net.feature_shape[1] * net.feature_shape[2]
    if isinstance(net.readout, DenseReadout):
        flops += 2 * net.n_features * net.n_voxels
    else:
        flops += 2 * net.n_voxels * (c * s + c)
    return flops
