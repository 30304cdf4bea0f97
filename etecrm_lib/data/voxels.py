"""The simulated voxels: where they sit, their pRFs, and how each reads out its area's features.

Part of the simulated cortex (:mod:`.simulate`; the features are :mod:`.cortex`'s, the noise
:mod:`.calibration`'s).

Voxels sit in a 64 x 64 x 18 volume of 2 x 2 x 2.5 mm voxels, each ROI a 2-slice slab split into
two hemispheres; within a hemisphere eccentricity runs along x and polar angle along y, so
neighbouring voxels have neighbouring pRFs. ``ds.voxels[roi].extra`` holds ``prf_x``, ``prf_y``,
``prf_sigma``, ``prf_eccentricity``, ``prf_polar_angle`` (degrees), ``snr`` and ``effective``.
"""

from __future__ import annotations

import numpy as np
import torch

from .cortex import (
    N_GABOR_CHANNELS,
    N_TEXTURE_CHANNELS,
    V1_GRID,
    V1_ORIENTATIONS,
    V1_WAVELENGTHS_DEG,
    ReleasedCNN,
    VentralStream,
)
from .dataset import VoxelInfo
from .measurement import CORTEX, SimulationConfig, hemifield_grid


def layout_voxels(config: SimulationConfig, rng: np.random.Generator) -> dict:
    """Place each ROI's voxels in the volume and give them retinotopic pRFs: ``{roi: VoxelInfo}``.

    ROI number r fills slices 3r+1 and 3r+2 (z). The left hemisphere (low x index) sees the right
    visual field and vice versa. Within a hemisphere, eccentricity grows (log-spaced, like
    cortical magnification) away from the midline along x and polar angle runs from lower to
    upper field along y, with a little jitter. Cells are dropped at random to get the exact count.
    """
    nx, ny, _ = config.volume_shape
    ecc_min, ecc_max = config.eccentricity_range_deg
    sizes = np.asarray(config.voxel_size_mm, dtype=np.float64)
    affine = np.diag([*sizes, 1.0])
    affine[:3, 3] = -(np.asarray(config.volume_shape) - 1) / 2 * sizes
    layout = {}
    for r, (roi, n_voxels) in enumerate(config.voxels.items()):
        n_ecc, n_ang = hemifield_grid(n_voxels)
        grid = np.meshgrid(np.arange(n_ecc), np.arange(n_ang), [0, 1], [-1, 1], indexing="ij")
        e, a, z, side = (
            g.ravel() for g in grid
        )  # eccentricity step, angle step, slice, hemisphere
        keep = np.sort(rng.choice(e.size, size=n_voxels, replace=False))
        e, a, z, side = e[keep], a[keep], z[keep], side[keep]
        ecc = ecc_min * (ecc_max / ecc_min) ** ((e + 0.5 + rng.uniform(-0.3, 0.3, e.size)) / n_ecc)
        angle = np.deg2rad(-90 + 180 * (a + 0.5 + rng.uniform(-0.3, 0.3, a.size)) / n_ang)
        # side -1: left hemisphere at low x index, sees the right visual field (prf_x > 0)
        i = np.where(side < 0, nx // 2 - 2 - e, nx // 2 + 1 + e)
        j = (ny - n_ang) // 2 + a
        k = 3 * r + 1 + z
        intercept, slope = CORTEX[roi].prf_sigma
        sigma = (intercept + slope * ecc) * np.exp(rng.normal(0, 0.15, ecc.size))
        x, y = -side * ecc * np.cos(angle), ecc * np.sin(angle)
        extra = {
            "prf_x": x,
            "prf_y": y,
            "prf_sigma": sigma,
            "prf_eccentricity": ecc,
            "prf_polar_angle": np.rad2deg(np.arctan2(y, x)),
        }
        extra = {name: values.astype(np.float32) for name, values in extra.items()}
        volume_index = 1 + i + j * nx + k * nx * ny  # 1-based, column-major (MATLAB) order
        order = np.argsort(volume_index)
        layout[roi] = VoxelInfo(
            volume_index[order],
            config.volume_shape,
            affine,
            {name: values[order] for name, values in extra.items()},
        )
    return layout


def prf_weights(
    prf_x, prf_y, prf_sigma, grid: int, field_of_view_deg: float, device=None
) -> torch.Tensor:
    """Gaussian pRFs sampled on a ``grid x grid`` map of the visual field: ``float32 (V,
    grid*grid)``.

    Cell centres run over the field of view (x right, y up, degrees). Each row sums to 1. The
    Gaussian is widened by half a cell, so a pRF smaller than a cell still covers it smoothly.
    """
    cell = field_of_view_deg / grid
    centres = (torch.arange(grid, dtype=torch.float64) + 0.5 - grid / 2) * cell
    ys, xs = -centres[:, None].expand(grid, grid), centres[None, :].expand(grid, grid)
    x, y, s = (
        torch.as_tensor(np.asarray(v, dtype=np.float64))[:, None] for v in (prf_x, prf_y, prf_sigma)
    )
    sigma2 = s**2 + (cell / 2) ** 2
    d2 = (xs.reshape(1, -1) - x) ** 2 + (ys.reshape(1, -1) - y) ** 2
    w = torch.exp(-d2 / (2 * sigma2))
    w = torch.where(
        d2 < 25 * sigma2, w, torch.zeros_like(w)
    )  # cut at 5 sigma (no slow denormal floats)
    return (w / w.sum(1, keepdim=True)).to(device=device, dtype=torch.float32)


FEATURE_GRID = {"v4_conjunctions": 16, "lo_invariant": 8}  # cells across the field of view


def area_readout(roi: str, prfs: dict, config: SimulationConfig, rng: np.random.Generator, device):
    """(feature set name, pRF weights (V, grid^2), channel weights (V, C)) of one ROI's voxels."""
    area = CORTEX[roi]
    n = prfs["prf_x"].size
    grid = {
        "gabor_energy": min(V1_GRID, config.image_size // 2),
        "texture": config.image_size // 4,
    }.get(area.features)
    if area.features == "gabor_energy":
        weights = v1_channel_weights(prfs, config, rng)
    elif area.features == "texture":
        first = rng.dirichlet(np.full(N_GABOR_CHANNELS, 0.5), size=n) * area.first_order_share
        second = rng.dirichlet(np.full(N_TEXTURE_CHANNELS, 0.3), size=n) * (
            1 - area.first_order_share
        )
        weights = np.concatenate([first, second], axis=1)
    else:
        channels = (
            VentralStream.v4_outputs
            if area.features == "v4_conjunctions"
            else VentralStream.lo_units
        )
        grid = FEATURE_GRID[area.features]
        weights = rng.dirichlet(np.full(channels, 0.3), size=n)
    prf = prf_weights(
        prfs["prf_x"], prfs["prf_y"], prfs["prf_sigma"], grid, config.field_of_view_deg, device
    )
    return area.features, prf, torch.as_tensor(weights, dtype=torch.float32, device=device)


def cnn_control_readout(prfs: dict, config: SimulationConfig, rng: np.random.Generator, device):
    """The "cnn" control: pRF over the network's last map x sparse non-negative channel weights.

    This is a special case of ETECRM's read-out ``features @ (W * W) + b`` (non-negative weights on
    the flattened 128 x H/8 x W/8 map), so the end-to-end model can represent it exactly.
    """
    n = prfs["prf_x"].size
    weights = rng.dirichlet(np.full(ReleasedCNN.channels, 0.3), size=n)
    prf = prf_weights(
        prfs["prf_x"],
        prfs["prf_y"],
        prfs["prf_sigma"],
        config.image_size // 8,
        config.field_of_view_deg,
        device,
    )
    return "released_cnn", prf, torch.as_tensor(weights, dtype=torch.float32, device=device)


def v1_channel_weights(
    prfs: dict, config: SimulationConfig, rng: np.random.Generator
) -> np.ndarray:
    """V1 voxels: spatial-frequency tuning that coarsens with eccentricity, weak radial orientation
    bias."""
    n = prfs["prf_x"].size
    n_sf, n_ori = len(V1_WAVELENGTHS_DEG), V1_ORIENTATIONS
    preferred_sf = (n_sf - 1) * prfs["prf_eccentricity"] / config.eccentricity_range_deg[
        1
    ] + rng.normal(0, 0.3, n)
    sf_tuning = np.exp(-((np.arange(n_sf)[None] - preferred_sf[:, None]) ** 2) / (2 * 0.7**2))
    # A grating whose stripes point at fixation has its frequency vector at polar angle + 90 deg.
    radial = np.deg2rad(prfs["prf_polar_angle"]) + np.pi / 2 + rng.normal(0, 0.35, n)
    thetas = np.arange(n_ori) * np.pi / n_ori
    strength = rng.uniform(0, 0.5, n)
    ori_tuning = 1 + strength[:, None] * np.cos(2 * (thetas[None] - radial[:, None]))
    weights = sf_tuning[:, :, None] * ori_tuning[:, None, :]
    return (weights / weights.sum(axis=(1, 2), keepdims=True)).reshape(n, n_sf * n_ori)
