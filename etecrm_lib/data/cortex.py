"""What each simulated visual area computes from an image (the ground truth of :mod:`.simulate`).

How each voxel responds (the ground truth)
------------------------------------------
Every voxel has a population receptive field (pRF): a 2-D Gaussian at ``(prf_x, prf_y)`` with
std ``prf_sigma`` (degrees; x to the right, y up, 0 at fixation) whose size grows linearly with
eccentricity, more steeply in higher areas (after Dumoulin & Wandell 2008). Each area computes
feature maps from the image. A voxel reads a few *tuning components* (channel profiles shared by
its area), each pooled by its pRF and passed through a compressive power (0.5), and mixes them with
weights that vary smoothly over the cortex (:func:`.voxels.area_tuning`)::

    drive_vk(image) = sum_c component_kc * sum_xy prf_v(x, y) * feature_c(image, x, y)
    signal_v(image) = sum_k weight_vk * zscore(drive_vk ** 0.5)

In V4 and LO half of the (squared) weight is on components of the area's *input*, the texture
energy computed in V2/V3: the BOLD signal follows an area's synaptic input and local processing
as well as its spiking output (Logothetis et al. 2001), and both areas receive direct input from
V2/V3 (Felleman & Van Essen 1991). Generator 4 had none, and its V4/LO voxels could be predicted by
an oracle given their true features but learned by no model from 1,750 images (the learnability
gate of :mod:`.calibration`).

The areas form one hierarchy, each stage built on the one before (``ground_truth="cortex"``, the
default):

- V1: complex-cell Gabor energy, 3 spatial frequencies x 8 orientations. Preferred spatial
  frequency falls with eccentricity; a mild preference for radial orientations.
- V2, V3: larger pRFs over second-order (texture) features - the Gabor energy of the local Gabor
  energy maps ("contrast of contrast"; Freeman & Simoncelli 2011, Kay et al. 2013) - plus some
  first-order energy (more in V2 than V3).
- V4: units tuned to *conjunctions* of V1 outputs: each sums a few orientation-energy maps at
  particular relative positions (excitatory) and is suppressed by others (inhibitory), then is
  rectified (at :data:`CONJUNCTION_THRESHOLD`), divisively normalised (Carandini & Heeger 2012)
  and max-pooled over nearby positions.
  Such conjunctions of oriented parts give the curvature and corner tuning of V4 cells (Pasupathy &
  Connor 2001; Hegde & Van Essen 2000 for V2/V4 conjunctions) and some tolerance to position
  (the "S" and "C" stages of Riesenhuber & Poggio 1999; Serre et al. 2007). One set of weights per
  spatial scale (3 scales x 32 units).
- LO: conjunctions of V4 outputs at a still larger scale, after a maximum over the three spatial
  scales (tolerance to size) and again over positions (tolerance to position): LO responds to
  shape largely regardless of where and how large it is (Grill-Spector et al. 1999; Kourtzi &
  Kanwisher 2001; complexity grows along the ventral stream, Kobatake & Tanaka 1994).

The V4/LO weights are random and never trained; they are drawn from a *network seed* derived from
the simulation's ``seed`` (``ds.info["network_seed"]``), so every ``seed`` is another cortex (its
subjects share it, as they share the images). Nothing in it was tuned to make a model family win.

Control cortices (``ground_truth=...``), to check that the tools can tell model families apart:

- ``"gabor"``: every voxel is a sparse, non-negative linear read-out (12 features near its pRF) of
  the project's own Gabor wavelet pyramid (:func:`etecrm_lib.features.gabor.gabor_features`, default
  settings). The two-step Gabor model (``gwp_ridge``) holds the true features: it should win.
- ``"cnn"``: every voxel is a non-negative read-out (pRF x channel weights) of a random network with
  the ETECRM architecture the authors released (:class:`ReleasedCNN`: three 3x3 convolutions of
  stride 2, 128 channels, ReLU; each image min-max scaled, minus 0.5). An end-to-end model of that
  architecture can represent it exactly: ETECRM should win.
Both controls are linear in their features (no compressive power); their measurement is the same.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .measurement import SimulationConfig

V1_GRID = 32  # V1 energy is pooled on at most 32 x 32 cells (0.625 deg): pRF pooling stays cheap
V1_WAVELENGTHS_DEG = (20 / 24, 20 / 12, 20 / 6)  # 1.2, 0.6 and 0.3 cycles per degree
V1_ORIENTATIONS = 8
TEXTURE_WAVELENGTH_DEG = 4.0
TEXTURE_ORIENTATIONS = 4
N_GABOR_CHANNELS = len(V1_WAVELENGTHS_DEG) * V1_ORIENTATIONS
N_TEXTURE_CHANNELS = len(V1_WAVELENGTHS_DEG) * (V1_ORIENTATIONS // 2) * TEXTURE_ORIENTATIONS
# V4/LO units are rectified at 0 (generator 4: at 1, in units of the normalised input). A voxel
# sums very many units whose thresholds spread around 0; their sum responds smoothly, not to the
# rare image that crosses one high threshold.
CONJUNCTION_THRESHOLD = 0.0
ENERGY_CHUNK_ELEMENTS = 2**21  # complex numbers per chunk of gabor_energy (16 MB)


def gabor_energy(
    images: torch.Tensor, wavelengths_px, n_orientations: int, halve: bool = False
) -> torch.Tensor:
    """Quadrature-pair (complex-cell) Gabor energy: ``(B, H, W) -> (B, n_wavelengths,
    n_orientations, H, W)``, or ``H/2, W/2`` if ``halve``.

    The filters are Gaussians in the Fourier domain centred on one frequency (wavelength in
    pixels, orientation k * 180 / n_orientations degrees) with a radial std of 0.35 x that
    frequency (about 1.2 octaves full width at half height). Keeping one side of the spectrum makes
    the filter analytic: the magnitude of its output is sqrt(even^2 + odd^2), the local amplitude of
    that frequency band (a grating of amplitude A at the filter's frequency gives A). Images should
    be zero on the border (e.g. ``stimuli - 0.5`` in the aperture): the convolution is circular.
    ``halve`` averages the energy over 2 x 2 pixels (:func:`average_2x2`).
    """
    h, w = images.shape[-2:]
    bank = torch.as_tensor(
        _gabor_bank(h, w, tuple(float(wl) for wl in wavelengths_px), n_orientations),
        device=images.device,
    )  # (C, H, W)
    spectrum = torch.fft.fft2(images.to(torch.float32))[:, None]  # (B, 1, H, W)
    scale = 2 if halve else 1
    energy = torch.empty(images.shape[0], len(bank), h // scale, w // scale, device=images.device)
    # a few images at a time: their (chunk, C, H, W) complex responses stay in the CPU's cache,
    # which halves the time on a CPU (each image's numbers are computed exactly as in one batch)
    chunk = max(1, ENERGY_CHUNK_ELEMENTS // bank.numel())
    for start in range(0, images.shape[0], chunk):
        response = spectrum[start : start + chunk] * bank
        response = torch.fft.ifft2(response, out=response)
        amplitude = torch.hypot(response.real, response.imag)  # = abs(), faster on CPUs
        energy[start : start + chunk] = average_2x2(amplitude) if halve else amplitude
    return energy.reshape(images.shape[0], len(wavelengths_px), n_orientations, *energy.shape[-2:])


def average_2x2(x: torch.Tensor) -> torch.Tensor:
    """The mean of each 2 x 2 block of pixels: ``(..., H, W) -> (..., H/2, W/2)``.

    The numbers of ``F.avg_pool2d(x, 2)`` (the same four additions in the same order), several
    times faster on CPUs.
    """
    return (x[..., ::2, ::2] + x[..., ::2, 1::2] + x[..., 1::2, ::2] + x[..., 1::2, 1::2]) / 4


@functools.lru_cache(maxsize=8)
def _gabor_bank(h: int, w: int, wavelengths_px: tuple, n_orientations: int) -> np.ndarray:
    """The Fourier-domain filters of :func:`gabor_energy`: ``complex64 (n_wavelengths *
    n_orientations, h, w)``."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    filters = []
    for wavelength in wavelengths_px:
        f0 = 1.0 / wavelength
        for k in range(n_orientations):
            theta = k * math.pi / n_orientations
            d2 = (fx - f0 * math.cos(theta)) ** 2 + (fy - f0 * math.sin(theta)) ** 2
            g = 2 * np.exp(-d2 / (2 * (0.35 * f0) ** 2))
            g[0, 0] = 0.0  # no response to the mean luminance
            filters.append(g)
    return np.stack(filters).astype(np.complex64)


def texture_energy(
    energy: torch.Tensor, wavelength_px: float, n_orientations: int, halve: bool = False
) -> torch.Tensor:
    """Second-order ("contrast of contrast") features: Gabor energy of compressed energy maps.

    ``energy`` (B, S, O, H, W) with even O -> ``(B, S * O/2 * n_orientations, H, W)`` (``H/2,
    W/2`` if ``halve``: see :func:`gabor_energy`). Pairs of
    neighbouring orientations are summed, compressed by a square root, and each of those maps is
    filtered again with a coarser Gabor energy bank: a voxel reading these features responds to
    texture boundaries and to contrast that varies across its pRF.
    """
    b, s, o, h, w = energy.shape
    maps = energy.reshape(b, s, o // 2, 2, h, w).sum(3).sqrt().reshape(b, s * o // 2, h, w)
    second = gabor_energy(maps.reshape(-1, h, w), [wavelength_px], n_orientations, halve)
    return second.reshape(b, -1, *second.shape[-2:])


def normalise(x: torch.Tensor, size: int = 5) -> torch.Tensor:
    """Divisive normalisation (Carandini & Heeger 2012): each unit over the local mean of all
    channels.

    ``x (B, C, H, W) >= 0``; the pool is the mean over channels and a ``size x size`` neighbourhood,
    plus a tenth of the image's mean activity, so overall contrast matters little.
    """
    pool = F.avg_pool2d(
        x.mean(1, keepdim=True), size, stride=1, padding=size // 2, count_include_pad=False
    )
    return x / (pool + 0.1 * x.mean(dim=(1, 2, 3), keepdim=True) + 1e-6)


def conjunction_weights(
    n_units: int,
    n_inputs: int,
    size: int,
    n_excitatory: int,
    n_inhibitory: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """Sparse random conv weights ``(n_units, n_inputs, size, size)``: each unit a conjunction of
    parts.

    Each unit sums ``n_excitatory`` (input channel, position) pairs with weights in [0.5, 1] and
    subtracts ``n_inhibitory`` others with weights in [0.25, 0.5]; everything else is 0. After a
    rectifying threshold the unit answers when its parts appear together in their places.
    """
    weight = torch.zeros(n_units, n_inputs * size * size)
    for unit in range(n_units):
        parts = torch.randperm(n_inputs * size * size, generator=generator)[
            : n_excitatory + n_inhibitory
        ]
        strength = torch.rand(len(parts), generator=generator)
        weight[unit, parts[:n_excitatory]] = 0.5 + 0.5 * strength[:n_excitatory]
        weight[unit, parts[n_excitatory:]] = -(0.25 + 0.25 * strength[n_excitatory:])
    return weight.reshape(n_units, n_inputs, size, size)


def max_pool(x: torch.Tensor) -> torch.Tensor:
    """Maximum over 3 x 3 cells, stride 2, padding 1: ``(B, C, H, W) -> (B, C, H/2, W/2)``.

    ``F.max_pool2d`` in channels-last memory order, several times faster on CPUs (the same
    numbers: a maximum does not round).
    """
    x = x.contiguous(memory_format=torch.channels_last)
    return F.max_pool2d(x, 3, stride=2, padding=1).contiguous()


class VentralStream(nn.Module):
    """V4 and LO of the simulated cortex, built on its V1 (see the module docstring).

    Input: V1 complex-cell energy ``(B, S, O, g, g)`` (S = 3 scales, O = 8 orientations on a g x g
    grid over the field of view); it is averaged to a 32 x 32 grid (0.625 deg cells for 20 deg) and
    normalised per scale. V4: 32 conjunction units of 5 x 5 cells per scale (the same weights at
    every scale), rectified (:data:`CONJUNCTION_THRESHOLD`), normalised,
    max-pooled over 3 x 3 cells, stride 2: ``(B, 96, 16, 16)``. LO: the maximum over the three
    scales, then 32 conjunctions of 3 x 3 V4 cells, rectified, normalised, max-pooled 3 x 3, stride
    2: ``(B, 32, 8, 8)``. Weights come from ``seed`` (:func:`network_seed`) and never change.
    """

    grid = 32
    v4_units = 32
    v4_outputs = 3 * 32  # V4 units are scale-specific: 3 scales x 32 units
    lo_units = 32

    def __init__(self, seed: int):
        super().__init__()
        gen = torch.Generator().manual_seed(int(seed))
        self.register_buffer(
            "v4_weight", conjunction_weights(self.v4_units, V1_ORIENTATIONS, 5, 3, 2, gen)
        )
        self.register_buffer(
            "lo_weight", conjunction_weights(self.lo_units, self.v4_units, 3, 3, 1, gen)
        )

    def forward(self, v1_energy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, n_scales, n_ori = v1_energy.shape[:3]
        x = F.adaptive_avg_pool2d(v1_energy.flatten(0, 1), self.grid)  # (B * S, O, 32, 32)
        x = normalise(x)
        v4 = F.relu(F.conv2d(x, self.v4_weight, padding=2) - CONJUNCTION_THRESHOLD)
        v4 = max_pool(normalise(v4))  # (B * S, 32, 16, 16)
        v4 = v4.reshape(b, n_scales, self.v4_units, self.grid // 2, self.grid // 2)
        lo = F.relu(
            F.conv2d(normalise(v4.amax(1)), self.lo_weight, padding=1) - CONJUNCTION_THRESHOLD
        )
        lo = max_pool(normalise(lo))  # (B, 32, 8, 8)
        return v4.flatten(1, 2), lo


class ReleasedCNN(nn.Module):
    """A random network with the ETECRM architecture the authors released: the "cnn" control's
    features.

    Each image ``(B, H, W)`` is scaled by its own min and max to [0, 1], minus 0.5; three
    convolutions 3 x 3, stride 2, padding 1, 128 channels, each followed by ReLU (no pooling, no
    normalisation): ``(B, 128, H/8, W/8)``. The weights are PyTorch's default initialisation drawn
    from ``seed`` (:func:`network_seed`); they are never trained. Written here from the published
    description, independent of the book's own model code.
    """

    channels = 128

    def __init__(self, seed: int):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            self.convs = nn.ModuleList(
                [
                    nn.Conv2d(1 if k == 0 else self.channels, self.channels, 3, stride=2, padding=1)
                    for k in range(3)
                ]
            )
        self.requires_grad_(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images[:, None].to(torch.float32)
        low = x.amin(dim=(1, 2, 3), keepdim=True)
        high = x.amax(dim=(1, 2, 3), keepdim=True)
        x = (x - low) / (high - low).clamp_min(1e-6) - 0.5
        for conv in self.convs:
            x = F.relu(conv(x))
        return x


def feature_maps(
    images: torch.Tensor,
    network: nn.Module,
    config: SimulationConfig,
    names=("gabor_energy", "texture", "v4_conjunctions", "lo_invariant"),
) -> dict:
    """The areas' feature maps for a batch ``(B, H, W)`` of stimuli: ``{name: (B, C, grid, grid)}``.

    "gabor_energy" (24 channels, a grid of min(32, H/2)), "texture" (24 first-order + 48
    second-order channels, H/4 grid), "v4_conjunctions" (96 channels, 16 x 16) and "lo_invariant"
    (32 channels, 8 x 8) from ``network`` = :class:`VentralStream`; "released_cnn" (128 channels,
    H/8 grid) from ``network`` = :class:`ReleasedCNN`. Only ``names`` are computed.
    """
    deg_per_px = config.field_of_view_deg / config.image_size
    maps = {}
    with torch.no_grad():
        if set(names) & {"gabor_energy", "texture", "v4_conjunctions", "lo_invariant"}:
            by_scale = gabor_energy(
                images - 0.5, [wl / deg_per_px for wl in V1_WAVELENGTHS_DEG], V1_ORIENTATIONS, True
            )  # (B, 3, 8, H/2, W/2)
            energy = by_scale.flatten(1, 2)  # (B, 24, H/2, W/2)
            maps["gabor_energy"] = F.adaptive_avg_pool2d(energy, min(V1_GRID, energy.shape[-1]))
        if "texture" in names:
            texture = texture_energy(
                by_scale, TEXTURE_WAVELENGTH_DEG / (2 * deg_per_px), TEXTURE_ORIENTATIONS, True
            )
            maps["texture"] = torch.cat([average_2x2(energy), texture], dim=1)
        if "v4_conjunctions" in names or "lo_invariant" in names:
            maps["v4_conjunctions"], maps["lo_invariant"] = network(by_scale)
        if "released_cnn" in names:
            maps["released_cnn"] = network(images)
    return {name: maps[name] for name in names}
