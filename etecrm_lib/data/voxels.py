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
AREA_CHANNELS = {  # channels of each feature set beyond V1
    "texture": N_GABOR_CHANNELS + N_TEXTURE_CHANNELS,
    "v4_conjunctions": VentralStream.v4_outputs,
    "lo_invariant": VentralStream.lo_units,
}
TUNING_COMPONENTS = 4  # K: shared tuning components per area beyond V1 (V1: its 3 frequency bands)
INPUT_COMPONENTS = 2  # components of the area's input (texture energy) where input_share > 0
INPUT_FIRST_ORDER_SHARE = CORTEX["V3"].first_order_share  # the input's: V3's, the area before V4
TUNING_LENGTH_MM = 6.0  # correlation length of the tuning fields along the cortex
TUNING_SPREAD = 1.0  # s.d. of the log weight of a component (smooth part)
TUNING_JITTER = 0.25  # s.d. of each voxel's own deviation of that log weight


def smooth_fields(
    positions_mm: np.ndarray, n_fields: int, length_mm: float, rng: np.random.Generator
) -> np.ndarray:
    """Smooth random fields over the cortex: ``(V, 3) mm -> (V, n_fields)``, zero mean, unit s.d.

    A Gaussian process with a squared-exponential correlation of length ``length_mm``, drawn as a
    sum of 128 random cosine waves (random Fourier features): neighbouring voxels get similar
    values, voxels many lengths apart independent ones.
    """
    n_waves = 128
    freqs = rng.normal(0, 1 / length_mm, size=(n_waves, positions_mm.shape[1]))
    phases = rng.uniform(0, 2 * np.pi, n_waves)
    weights = rng.normal(size=(n_waves, n_fields))
    waves = np.sqrt(2 / n_waves) * np.cos(positions_mm @ freqs.T + phases)
    return waves @ weights


def area_components(roi: str, n_channels: int, seed: int) -> np.ndarray:
    """The K tuning components of an area beyond V1: non-negative channel profiles ``(K, C)``.

    Drawn from ``seed`` (the network seed: every subject's area shares them, as it shares the
    area's feature maps). A texture area's components put :attr:`AreaModel.first_order_share` of
    their weight on the first-order Gabor energy channels and the rest on the second-order ones.
    """
    rng = np.random.default_rng([seed, list(CORTEX).index(roi)])
    area = CORTEX[roi]
    if area.features == "texture":
        return texture_components(TUNING_COMPONENTS, area.first_order_share, rng)
    return rng.dirichlet(np.full(n_channels, 0.5), TUNING_COMPONENTS)


def input_components(roi: str, seed: int) -> np.ndarray:
    """The components of an area's input, the texture energy of V2/V3: ``(INPUT_COMPONENTS, 72)``.

    Drawn from ``seed`` like :func:`area_components` (another stream), with V3's first-order share.
    """
    rng = np.random.default_rng([seed, list(CORTEX).index(roi), 1])
    return texture_components(INPUT_COMPONENTS, INPUT_FIRST_ORDER_SHARE, rng)


def texture_components(n: int, first_order_share: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` random channel profiles over the "texture" maps (24 first-order + 48 second-order
    channels): ``(n, 72)``, non-negative, each summing to 1, ``first_order_share`` of it on the
    first-order channels.
    """
    first = rng.dirichlet(np.full(N_GABOR_CHANNELS, 1.0), n)
    second = rng.dirichlet(np.full(N_TEXTURE_CHANNELS, 0.5), n)
    return np.concatenate([first_order_share * first, (1 - first_order_share) * second], axis=1)


def area_tuning(
    roi: str,
    voxels: VoxelInfo,
    config: SimulationConfig,
    rng: np.random.Generator,
    seed: int,
    device,
) -> tuple[list, torch.Tensor]:
    """How one ROI's voxels read out their area (see :mod:`.simulate`): ``(parts, coefficients)``.

    ``parts`` is a list of ``(feature set name, pRF weights (V, grid^2), components)``: the channel
    profile of each tuning component, ``(V, K, C)`` (each voxel its own) in V1 and ``(K, C)``
    (shared by every voxel) in the other areas. ``coefficients (V, K_total)``: how much the voxel
    weighs each component, all parts' components in order. The coefficients are ``exp`` of smooth
    fields over the cortex (:func:`smooth_fields`) plus a little per-voxel jitter: neighbours share
    their tuning. V1's components are its three spatial-frequency bands (with a weak bias for
    radial orientations that follows the voxel's polar angle), weighed by a preferred frequency that
    falls with eccentricity; the other areas share K components (:func:`area_components`). Where
    the area has an ``input_share`` (V4, LO), a second part reads :data:`INPUT_COMPONENTS`
    components of the texture energy (:func:`input_components`) through the same pRF, and the
    voxel's squared coefficients are split: ``input_share`` of their sum on the input.
    """
    area = CORTEX[roi]
    extra = voxels.extra
    n = extra["prf_x"].size
    positions = voxels.coords * np.asarray(config.voxel_size_mm)
    field = smooth_fields(positions, TUNING_COMPONENTS, TUNING_LENGTH_MM, rng)
    if area.features == "gabor_energy":
        components = v1_components(extra, field[:, 0])
        preferred = 2 * extra["prf_eccentricity"] / config.eccentricity_range_deg[1]
        preferred = preferred + 0.3 * field[:, 1] + rng.normal(0, 0.1, n)
        bands = np.arange(len(V1_WAVELENGTHS_DEG))
        coefficients = np.exp(-((bands[None] - preferred[:, None]) ** 2) / (2 * 0.7**2))
    else:
        components = area_components(roi, AREA_CHANNELS[area.features], seed)  # (K, C), shared
        coefficients = smooth_weights(field, rng)
    parts = [
        (area.features, _prf(extra, grid_of(area.features, config), config, device), components)
    ]
    if area.input_share > 0:
        field = smooth_fields(positions, INPUT_COMPONENTS, TUNING_LENGTH_MM, rng)
        own, given = coefficients, smooth_weights(field, rng)
        coefficients = np.concatenate(
            [
                own * np.sqrt((1 - area.input_share) / (own**2).sum(1, keepdims=True)),
                given * np.sqrt(area.input_share / (given**2).sum(1, keepdims=True)),
            ],
            axis=1,
        )
        prf = _prf(extra, grid_of("texture", config), config, device)
        parts.append(("texture", prf, input_components(roi, seed)))
    parts = [
        (name, prf, torch.as_tensor(np.ascontiguousarray(c), dtype=torch.float32, device=device))
        for name, prf, c in parts
    ]
    return parts, torch.as_tensor(coefficients, dtype=torch.float32, device=device)


def grid_of(features: str, config: SimulationConfig) -> int:
    """Cells across the field of view of a feature set's maps (see :func:`.cortex.feature_maps`)."""
    if features == "gabor_energy":
        return min(V1_GRID, config.image_size // 2)
    return FEATURE_GRID.get(features, config.image_size // 4)


def smooth_weights(field: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Positive weights ``(V, K)`` from smooth fields ``(V, K)``: exp(spread x field + jitter)."""
    return np.exp(TUNING_SPREAD * field + rng.normal(0, TUNING_JITTER, field.shape))


def _prf(extra: dict, grid: int, config: SimulationConfig, device) -> torch.Tensor:
    return prf_weights(
        extra["prf_x"], extra["prf_y"], extra["prf_sigma"], grid, config.field_of_view_deg, device
    )


def v1_components(extra: dict, strength_field: np.ndarray) -> np.ndarray:
    """V1's three components ``(V, 3, 24)``: one spatial-frequency band each, all orientations,
    with a weak bias (up to 30 %, smooth over the cortex) for the radial orientation at the voxel's
    polar angle (a grating whose stripes point at fixation has its frequency vector at polar angle
    + 90 deg)."""
    n_sf, n_ori = len(V1_WAVELENGTHS_DEG), V1_ORIENTATIONS
    radial = np.deg2rad(extra["prf_polar_angle"]) + np.pi / 2
    thetas = np.arange(n_ori) * np.pi / n_ori
    strength = 0.15 + 0.15 * np.tanh(strength_field)
    orientation = 1 + strength[:, None] * np.cos(2 * (thetas[None] - radial[:, None]))
    components = np.zeros((len(radial), n_sf, n_sf, n_ori))
    for band in range(n_sf):
        components[:, band, band] = orientation / orientation.sum(1, keepdims=True)
    return components.reshape(len(radial), n_sf, n_sf * n_ori)


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
