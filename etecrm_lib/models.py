"""The ETECRM network, as its authors released it: a small CNN learned from the fMRI data, one
output per voxel.

The authors published their code (https://github.com/KaiQiao1992/ETECRM, file ``SFCNet5.py``); this
module follows the network it builds. In our words:

- **Input**: one grayscale channel, 128 x 128 pixels; every image is scaled by its *own* minimum and
  maximum to [0, 1], then 0.5 is subtracted (:func:`scale_images`), so every image spans [-0.5,
  0.5].
- **Feature layers**: three convolutions, each 3 x 3, stride 2, padding 1, 128 channels, each
  followed by a ReLU. No pooling, no batch normalization, no dropout. Each layer halves the side:
  128 -> 64 -> 32 -> 16, so the features of one image are a 128 x 16 x 16 map, flattened to
  32,768 numbers.
- **Regression layer**: one output unit per voxel of the ROI, all voxels at once:
  ``prediction = features @ (W * W) + b`` with ``W`` of shape ``(32768, V)``. Squaring makes every
  feature-to-voxel weight **non-negative** (``readout_weights="squared"``); ``"signed"`` uses ``W``
  as is (an ablation). ``W`` and ``b`` start uniform in [-0.1, 0.1]. No activation on the output.

The network never draws random numbers itself: the trainer (``training.py``) adds the noise of noise
regularization to its predictions. With a seed fixed before construction, the initial weights are
fixed too (``training.ETECRMConfig.build_network``).
"""

from __future__ import annotations

import torch
from torch import nn

READOUT_WEIGHTS = ("squared", "signed")
INIT_RANGE = 0.1  # W and b of the regression layer start uniform in [-INIT_RANGE, INIT_RANGE]


def scale_images(images: torch.Tensor) -> torch.Tensor:
    """Scale each image by its own min and max to [0, 1], then subtract 0.5: ``(B, ...) -> (B,
    ...)`` in [-0.5, 0.5].

    A constant image (max == min) becomes all zeros.
    """
    flat = images.flatten(1)
    low = flat.min(dim=1).values.view(-1, *([1] * (images.ndim - 1)))
    high = flat.max(dim=1).values.view(-1, *([1] * (images.ndim - 1)))
    spread = high - low
    return torch.where(
        spread > 0, (images - low) / spread.clamp_min(1e-12) - 0.5, torch.zeros_like(images)
    )


class ETECRMNet(nn.Module):
    """Images ``(B, H, W)`` or ``(B, 1, H, W)`` (any range) -> predicted responses ``(B, V)``.

    Parameters
    ----------
    n_voxels : voxels of the ROI (output units), V
    image_size : side of the square input images in pixels (128 in the released design); must be
        divisible by ``2 ** n_layers``
    channels : channels of every conv layer (128 in the released design)
    n_layers : number of conv layers (3 in the released design)
    readout_weights : ``"squared"`` (weights ``W * W`` >= 0, the released design) or ``"signed"``
    """

    def __init__(
        self,
        n_voxels: int,
        image_size: int = 128,
        channels: int = 128,
        n_layers: int = 3,
        readout_weights: str = "squared",
    ):
        super().__init__()
        if n_voxels < 1:
            raise ValueError(
                f"the network needs at least one voxel to predict, got n_voxels={n_voxels}"
            )
        if channels < 1 or n_layers < 1:
            raise ValueError(
                f"channels and n_layers must be >= 1, got channels={channels}, n_layers={n_layers}"
            )
        if image_size % 2**n_layers:
            raise ValueError(
                f"image_size {image_size} must be divisible by 2**{n_layers} "
                f"(each of the {n_layers} conv layers halves the side)"
            )
        if readout_weights not in READOUT_WEIGHTS:
            raise ValueError(
                f"readout_weights must be one of {READOUT_WEIGHTS}, got {readout_weights!r}"
            )
        layers, c_in = [], 1
        for _ in range(n_layers):
            layers += [nn.Conv2d(c_in, channels, kernel_size=3, stride=2, padding=1), nn.ReLU()]
            c_in = channels
        self.features = nn.Sequential(*layers)
        side = image_size // 2**n_layers
        self.image_size, self.n_voxels = image_size, n_voxels
        self.feature_shape = (channels, side, side)
        self.n_features = channels * side * side
        self.readout_weights = readout_weights
        self.weight = nn.Parameter(
            torch.empty(self.n_features, n_voxels).uniform_(-INIT_RANGE, INIT_RANGE)
        )
        self.bias = nn.Parameter(torch.empty(n_voxels).uniform_(-INIT_RANGE, INIT_RANGE))

    def regression_weights(self) -> torch.Tensor:
        """The feature-to-voxel weights actually used, ``(F, V)``: ``W * W`` (>= 0) or ``W``."""
        return self.weight * self.weight if self.readout_weights == "squared" else self.weight

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Predict responses: images ``(B, H, W)`` or ``(B, 1, H, W)`` -> ``(B, V)``."""
        if images.ndim == 3:
            images = images.unsqueeze(1)
        features = self.features(scale_images(images)).flatten(1)  # (B, F)
        if features.dtype == torch.float16:  # float16 autocast (gpu.autocast on a T4)
            # A sum over 32,768 features can pass float16's largest number (65504): float32 here.
            with torch.autocast(features.device.type, enabled=False):
                return features.float() @ self.regression_weights().float() + self.bias
        return features @ self.regression_weights() + self.bias


def count_flops(net: ETECRMNet) -> int:
    """Floating-point operations (2 per multiply-add) of one forward pass of one image."""
    flops, side = 0, net.image_size
    for layer in net.features:
        if isinstance(layer, nn.Conv2d):
            side //= 2
            k = layer.kernel_size[0] * layer.kernel_size[1]
            flops += 2 * side * side * layer.out_channels * layer.in_channels * k
    return flops + 2 * net.n_features * net.n_voxels
