"""The embedded simulated visual cortex: a vim-1-shaped dataset whose ground truth is known.

``simulate(subject=1)`` shows a few thousand natural images (see :mod:`.images`) to five simulated
visual areas and returns an :class:`EncodingDataset` shaped like vim-1 (Kay et al. 2008): 1750
train images shown twice (responses = mean of the 2 trials) and 120 test images shown 13 times
(``ds.test.repeats``), 128x128 px covering 20 x 20 degrees. Because it is a simulation, the
noise-free test responses are known too (``ds.test.oracle``), so noise ceilings are exact.

How each voxel responds (the ground truth)
------------------------------------------
Every voxel has a population receptive field (pRF): a 2-D Gaussian at ``(prf_x, prf_y)`` with
std ``prf_sigma`` (degrees; x to the right, y up, 0 at fixation) whose size grows linearly with
eccentricity, more steeply in higher areas (after Dumoulin & Wandell 2008). Each area computes
feature maps from the image; a voxel sums its own random mixture of those maps, weighted by its
pRF, and passes the sum through a compressive power (0.5)::

    drive_v(image) = sum_c w_vc * sum_xy prf_v(x, y) * feature_c(image, x, y)
    signal_v(image) = drive_v ** 0.5

- V1: complex-cell Gabor energy, 3 spatial frequencies x 8 orientations. Preferred spatial
  frequency falls with eccentricity; a mild preference for radial orientations.
- V2, V3: larger pRFs over second-order (texture) features - the Gabor energy of the local Gabor
  energy maps ("contrast of contrast") - plus some first-order energy (more in V2 than V3).
- V4, LO: still larger pRFs over the feature maps of a fixed random convolutional network with
  rectification and divisive normalisation (layer 2 for V4, layer 3 for LO). The network is the
  same for every subject; it is never trained.

Measurement: each voxel's signal is scaled to unit variance over the train images and multiplied
by the voxel's signal-to-noise ratio ``snr``; every trial adds unit-variance Gaussian noise that is
partly shared between neighbouring voxels (30 %). About a third of the voxels are *ineffective*
(snr < 0.015: almost no stimulus signal). Finally responses are z-scored per voxel with the train
mean and std (the same transform is applied to test trials and the oracle).

Voxels sit in a 64 x 64 x 18 volume of 2 x 2 x 2.5 mm voxels, each ROI a 2-slice slab split into
two hemispheres; within a hemisphere eccentricity runs along x and polar angle along y, so
neighbouring voxels have neighbouring pRFs. ``ds.voxels[roi].extra`` holds ``prf_x``, ``prf_y``,
``prf_sigma``, ``prf_eccentricity``, ``prf_polar_angle`` (degrees), ``snr`` and ``effective``.

Subjects see the same images (as in vim-1); their voxels (pRFs, mixtures, SNR, noise) differ.
Results are cached on disk (see :func:`simulate`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..device import get_device
from .dataset import EncodingDataset, Split, VoxelInfo, load_npz, save_npz
from .images import TEST_PHOTOS, TRAIN_PHOTOS, load_photos, make_stimuli

GENERATOR_VERSION = 1  # bump when the simulation changes: old cache files are then ignored
NETWORK_SEED = 2019  # the random V4/LO network is the same for every subject and seed
CNN_SIZE = 64  # the random network sees the image at 64 x 64 px whatever the image size
COMPRESSION = 0.5  # signal = drive ** COMPRESSION
INEFFECTIVE_SNR = 0.015  # voxels below this signal/noise ratio carry almost no stimulus signal


# --------------------------------------------------------------------------- configuration
@dataclass
class AreaModel:
    """The ground truth of one simulated visual area (see the module docstring).

    features : "gabor_energy", "texture", "cnn_layer2" or "cnn_layer3"
    prf_sigma : (intercept, slope): pRF std in degrees = intercept + slope * eccentricity
    first_order_share : for "texture" areas, the share of each voxel's weight on first-order energy
    effective_fraction : fraction of voxels that carry stimulus signal
    median_snr : median signal std / single-trial noise std of the effective voxels
    """

    features: str
    prf_sigma: tuple
    first_order_share: float
    effective_fraction: float
    median_snr: float


CORTEX = {
    "V1": AreaModel("gabor_energy", (0.2, 0.12), 1.0, 0.68, 0.30),
    "V2": AreaModel("texture", (0.3, 0.18), 0.5, 0.66, 0.24),
    "V3": AreaModel("texture", (0.4, 0.26), 0.3, 0.64, 0.20),
    "V4": AreaModel("cnn_layer2", (0.8, 0.40), 0.0, 0.62, 0.16),
    "LO": AreaModel("cnn_layer3", (1.5, 0.55), 0.0, 0.60, 0.13),
}

PROFILES = ("quick", "full", "default")


@dataclass
class SimulationConfig:
    """Sizes of the simulated experiment. ``for_profile("full")`` is vim-1-shaped."""

    name: str = "full"
    image_size: int = 128
    n_train: int = 1750
    n_test: int = 120
    train_repeats: int = 2
    test_repeats: int = 13
    voxels: dict = field(default_factory=lambda: {"V1": 800, "V2": 700, "V3": 600, "V4": 500, "LO": 400})
    photo_fraction: float = 0.5
    field_of_view_deg: float = 20.0
    eccentricity_range_deg: tuple = (0.3, 9.5)
    noise_correlation: float = 0.3
    noise_smoothing_mm: float = 2.0
    volume_shape: tuple = (64, 64, 18)
    voxel_size_mm: tuple = (2.0, 2.0, 2.5)
    batch_size: int = 32

    @classmethod
    def for_profile(cls, name: str = "full") -> "SimulationConfig":
        """``"full"`` (= ``"default"``): vim-1 sizes; ``"quick"``: a few seconds on a CPU, for CI."""
        if name in ("full", "default"):
            return cls()
        if name == "quick":
            return cls(name="quick", image_size=64, n_train=300, n_test=40,
                       voxels={"V1": 120, "V2": 110, "V3": 100, "V4": 90, "LO": 80})
        raise ValueError(f"unknown simulation profile {name!r}; use one of {PROFILES} or pass a SimulationConfig")

    def check(self) -> None:
        """Raise a ValueError that says what to change if the sizes cannot work."""
        if self.image_size % 4 or self.image_size < 32:
            raise ValueError(f"image_size must be a multiple of 4 and at least 32, got {self.image_size}")
        if self.n_train < 10 or self.n_test < 3:
            raise ValueError(f"need at least 10 train and 3 test images, got {self.n_train} and {self.n_test}")
        if self.train_repeats < 1 or self.test_repeats < 2:
            raise ValueError("need train_repeats >= 1 and test_repeats >= 2 (the noise ceiling needs repeats)")
        unknown = [roi for roi in self.voxels if roi not in CORTEX]
        if unknown or not self.voxels:
            raise ValueError(f"voxels must map ROIs among {list(CORTEX)} to counts, got {self.voxels}")
        if 3 * len(self.voxels) > self.volume_shape[2]:
            raise ValueError(f"a volume {self.volume_shape} has room for {self.volume_shape[2] // 3} ROI slabs, "
                             f"not {len(self.voxels)}")
        for roi, n in self.voxels.items():
            n_ecc, n_ang = _hemifield_grid(n)
            if n < 4 or n_ecc > self.volume_shape[0] // 2 - 2 or n_ang > self.volume_shape[1]:
                raise ValueError(f"{n} voxels for {roi} do not fit a hemisphere slab of the volume "
                                 f"{self.volume_shape}; use between 4 and about 3000 voxels per ROI")


# --------------------------------------------------------------------------- the entry point
def simulate(subject: int = 1, profile: str | SimulationConfig = "default", seed: int = 0,
             cache: bool = True, progress: bool | None = None) -> EncodingDataset:
    """The simulated vim-1-like dataset of one subject (see the module docstring).

    Parameters
    ----------
    subject : int >= 1. Subjects see the same images; their voxels differ.
    profile : "default" (= "full": 1750/120 images of 128 px, 3000 voxels, about a minute on a
        laptop CPU) or "quick" (300/40 images of 64 px, 500 voxels, a few seconds), or a
        :class:`SimulationConfig`.
    seed : int >= 0. Another seed gives other images and other voxels.
    cache : keep the result in ``cache_dir("sim")`` and reuse it (verified before use).
    progress : show a progress bar (default: for the full profile only).

    The same ``(subject, profile, seed)`` gives the same dataset on the same machine (on a GPU the
    numbers differ from the CPU's only by floating-point rounding).
    """
    config = profile if isinstance(profile, SimulationConfig) else SimulationConfig.for_profile(profile)
    config.check()
    if isinstance(subject, bool) or not isinstance(subject, (int, np.integer)) or subject < 1:
        raise ValueError(f"subject must be a positive integer, got {subject!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    subject, seed = int(subject), int(seed)
    key = simulation_key(config, subject, seed)
    path = None
    if cache:
        from ..storage import cache_dir

        path = cache_dir("sim") / f"sim_{config.name}_subject{subject}_seed{seed}_{key[:16]}.npz"
        dataset = _load_verified(path, key, config)
        if dataset is not None:
            return dataset
    dataset = generate(config, subject, seed, progress=config.name == "full" if progress is None else progress)
    if path is not None:
        save_npz(dataset, path)
    return dataset


def simulation_key(config: SimulationConfig, subject: int, seed: int) -> str:
    """SHA-256 of everything the simulation depends on (the cache file's identity)."""
    params = {"version": GENERATOR_VERSION, "subject": subject, "seed": seed, "config": asdict(config),
              "cortex": {roi: asdict(area) for roi, area in CORTEX.items()}, "network_seed": NETWORK_SEED,
              "photos": {"train": TRAIN_PHOTOS, "test": TEST_PHOTOS}}
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=list).encode()).hexdigest()


def _load_verified(path: Path, key: str, config: SimulationConfig) -> EncodingDataset | None:
    """The cached dataset at ``path`` if it is complete and made with ``key``; else None.

    An unreadable or mismatching file is reported with a warning and deleted.
    """
    if not path.exists():
        return None
    try:
        dataset = load_npz(path)
        problem = _mismatch(dataset, key, config)
    except Exception as err:  # noqa: BLE001 - any failure to read means: regenerate
        problem = f"it cannot be read ({type(err).__name__}: {err})"
    if problem is None:
        return dataset
    warnings.warn(f"cached simulation {path} is unusable: {problem}; deleting it and simulating again", stacklevel=3)
    path.unlink(missing_ok=True)
    return None


def _mismatch(ds: EncodingDataset, key: str, config: SimulationConfig) -> str | None:
    """What is wrong with a loaded cache file, or None if it is what ``key`` describes."""
    if ds.info.get("cache_key") != key:
        return "it was made with other parameters"
    size = (config.image_size, config.image_size)
    if ds.train.stimuli.shape != (config.n_train, *size) or ds.test.stimuli.shape != (config.n_test, *size):
        return f"its images have shapes {ds.train.stimuli.shape} and {ds.test.stimuli.shape}"
    if ds.rois != list(config.voxels):
        return f"its ROIs are {ds.rois}"
    for roi, n in config.voxels.items():
        want = (config.test_repeats, config.n_test, n)
        if ds.n_voxels(roi) != n or roi not in ds.test.oracle or ds.test.repeats.get(roi, np.empty(0)).shape != want:
            return f"ROI {roi} has the wrong number of voxels, repeats or no oracle"
    return None


# --------------------------------------------------------------------------- the whole simulation
def generate(config: SimulationConfig, subject: int = 1, seed: int = 0, progress: bool = False) -> EncodingDataset:
    """Run the simulation without any cache (see :func:`simulate`)."""
    from tqdm.auto import tqdm

    start = time.perf_counter()
    device = get_device()
    # Images depend on the seed only (subjects see the same images); voxels on subject and seed.
    image_seeds = np.random.SeedSequence([20190726, seed]).spawn(2)
    voxel_seed, noise_seed = np.random.SeedSequence([20190727, seed, subject]).spawn(2)
    voxel_rng, noise_rng = np.random.default_rng(voxel_seed), np.random.default_rng(noise_seed)
    n_batches = math.ceil(config.n_train / config.batch_size) + math.ceil(config.n_test / config.batch_size)
    bar = tqdm(total=3 + n_batches, desc="simulating: images", disable=not progress)

    train_photos, test_photos = load_photos(TRAIN_PHOTOS), load_photos(TEST_PHOTOS)
    stimuli, sources = {}, {}
    for split, photos, n, seq in (("train", train_photos, config.n_train, image_seeds[0]),
                                  ("test", test_photos, config.n_test, image_seeds[1])):
        stimuli[split], sources[split] = make_stimuli(n, config.image_size, photos, np.random.default_rng(seq),
                                                      config.photo_fraction)
        bar.update()

    voxels = layout_voxels(config, voxel_rng)
    area = {roi: _area_readout(roi, voxels[roi].extra, config, voxel_rng, device) for roi in config.voxels}
    network = RandomVentralNet().to(device).eval()
    calibration = torch.as_tensor(stimuli["train"][:64], device=device)
    needed = sorted({features for features, _, _ in area.values()})
    scales = {name: maps.mean(dim=(0, 2, 3)).clamp_min(1e-12)
              for name, maps in feature_maps(calibration, network, config, needed).items()}

    bar.set_description("simulating: responses")
    signal = {split: {roi: [] for roi in config.voxels} for split in stimuli}
    for split in ("train", "test"):
        for batch in torch.as_tensor(stimuli[split]).split(config.batch_size):
            maps = feature_maps(batch.to(device), network, config, needed)
            for roi, (features, prf, weights) in area.items():
                pooled = maps[features].flatten(2) @ prf.T / scales[features][:, None]  # (B, C, V)
                drive = torch.einsum("bcv,vc->bv", pooled, weights)
                signal[split][roi].append(drive.clamp_min(0).pow(COMPRESSION).cpu().double().numpy())
            bar.update()
    signal = {split: {roi: np.concatenate(parts) for roi, parts in by_roi.items()} for split, by_roi in signal.items()}

    bar.set_description("simulating: measurement noise")
    train, test_repeats, test_oracle = _measure(signal, voxels, config, noise_rng, device)
    bar.update()
    bar.close()

    info = {
        "source": "simulated visual cortex (etecrm_lib.data.simulate)",
        "generator_version": GENERATOR_VERSION, "profile": config.name, "seed": seed,
        "cache_key": simulation_key(config, subject, seed),
        "field_of_view_deg": config.field_of_view_deg, "train_repeats": config.train_repeats,
        "photo_sources": {"train": sorted(train_photos), "test": sorted(test_photos)},
        "image_sources": sources,
        "ground_truth": {roi: _describe_area(roi) for roi in config.voxels},
        "noise": (f"Gaussian per trial, unit variance, a share of {config.noise_correlation} smoothed over "
                  f"{config.noise_smoothing_mm} mm between neighbouring voxels"),
        "response_units": "z-scored per voxel with the train mean and std (same transform on test and oracle)",
        "generation_seconds": round(time.perf_counter() - start, 1),
    }
    test_means = {roi: reps.mean(axis=0) for roi, reps in test_repeats.items()}
    return EncodingDataset("sim", subject, Split(stimuli["train"], train),
                           Split(stimuli["test"], test_means, test_repeats, test_oracle), voxels, info)


def _describe_area(roi: str) -> str:
    area = CORTEX[roi]
    what = {
        "gabor_energy": "complex-cell Gabor energy (3 spatial frequencies x 8 orientations)",
        "texture": f"second-order texture energy, {area.first_order_share:.0%} first-order Gabor energy",
        "cnn_layer2": "layer 2 of a fixed random convolutional network",
        "cnn_layer3": "layer 3 of a fixed random convolutional network",
    }[area.features]
    a, b = area.prf_sigma
    return f"{what}; pRF sigma = {a} + {b} x eccentricity (deg); compressive power {COMPRESSION}"


# --------------------------------------------------------------------------- voxels and pRFs
def _hemifield_grid(n_voxels: int) -> tuple[int, int]:
    """(eccentricity steps, polar-angle steps) of one hemisphere's 2-slice grid for an ROI."""
    cells = math.ceil(math.ceil(n_voxels / 2) / 2)
    n_ecc = math.ceil(math.sqrt(cells / 2))
    return n_ecc, math.ceil(cells / n_ecc)


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
        n_ecc, n_ang = _hemifield_grid(n_voxels)
        grid = np.meshgrid(np.arange(n_ecc), np.arange(n_ang), [0, 1], [-1, 1], indexing="ij")
        e, a, z, side = (g.ravel() for g in grid)  # eccentricity step, angle step, slice, hemisphere
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
        extra = {"prf_x": x, "prf_y": y, "prf_sigma": sigma, "prf_eccentricity": ecc,
                 "prf_polar_angle": np.rad2deg(np.arctan2(y, x))}
        extra = {name: values.astype(np.float32) for name, values in extra.items()}
        volume_index = 1 + i + j * nx + k * nx * ny  # 1-based, column-major (MATLAB) order
        order = np.argsort(volume_index)
        layout[roi] = VoxelInfo(volume_index[order], config.volume_shape, affine,
                                {name: values[order] for name, values in extra.items()})
    return layout


def prf_weights(prf_x, prf_y, prf_sigma, grid: int, field_of_view_deg: float, device=None) -> torch.Tensor:
    """Gaussian pRFs sampled on a ``grid x grid`` map of the visual field: ``float32 (V, grid*grid)``.

    Cell centres run over the field of view (x right, y up, degrees). Each row sums to 1. The
    Gaussian is widened by half a cell, so a pRF smaller than a cell still covers it smoothly.
    """
    cell = field_of_view_deg / grid
    centres = (torch.arange(grid, dtype=torch.float64) + 0.5 - grid / 2) * cell
    ys, xs = -centres[:, None].expand(grid, grid), centres[None, :].expand(grid, grid)
    x, y, s = (torch.as_tensor(np.asarray(v, dtype=np.float64))[:, None] for v in (prf_x, prf_y, prf_sigma))
    sigma2 = s ** 2 + (cell / 2) ** 2
    d2 = (xs.reshape(1, -1) - x) ** 2 + (ys.reshape(1, -1) - y) ** 2
    w = torch.exp(-d2 / (2 * sigma2))
    w = torch.where(d2 < 25 * sigma2, w, torch.zeros_like(w))  # cut at 5 sigma (no slow denormal floats)
    return (w / w.sum(1, keepdim=True)).to(device=device, dtype=torch.float32)


def _area_readout(roi: str, prfs: dict, config: SimulationConfig, rng: np.random.Generator, device):
    """(feature set name, pRF weights (V, grid^2), channel weights (V, C)) of one ROI's voxels."""
    area = CORTEX[roi]
    n = prfs["prf_x"].size
    grid = {"gabor_energy": config.image_size // 2, "texture": config.image_size // 4}.get(area.features, CNN_SIZE // 4)
    if area.features == "gabor_energy":
        weights = _v1_channel_weights(prfs, config, rng)
    elif area.features == "texture":
        first = rng.dirichlet(np.full(N_GABOR_CHANNELS, 0.5), size=n) * area.first_order_share
        second = rng.dirichlet(np.full(N_TEXTURE_CHANNELS, 0.3), size=n) * (1 - area.first_order_share)
        weights = np.concatenate([first, second], axis=1)
    else:
        weights = rng.dirichlet(np.full(RandomVentralNet.channels, 0.3), size=n)
    prf = prf_weights(prfs["prf_x"], prfs["prf_y"], prfs["prf_sigma"], grid, config.field_of_view_deg, device)
    return area.features, prf, torch.as_tensor(weights, dtype=torch.float32, device=device)


def _v1_channel_weights(prfs: dict, config: SimulationConfig, rng: np.random.Generator) -> np.ndarray:
    """V1 voxels: spatial-frequency tuning that coarsens with eccentricity, weak radial orientation bias."""
    n = prfs["prf_x"].size
    n_sf, n_ori = len(V1_WAVELENGTHS_DEG), V1_ORIENTATIONS
    preferred_sf = (n_sf - 1) * prfs["prf_eccentricity"] / config.eccentricity_range_deg[1] + rng.normal(0, 0.3, n)
    sf_tuning = np.exp(-((np.arange(n_sf)[None] - preferred_sf[:, None]) ** 2) / (2 * 0.7 ** 2))
    # A grating whose stripes point at fixation has its frequency vector at polar angle + 90 deg.
    radial = np.deg2rad(prfs["prf_polar_angle"]) + np.pi / 2 + rng.normal(0, 0.35, n)
    thetas = np.arange(n_ori) * np.pi / n_ori
    strength = rng.uniform(0, 0.5, n)
    ori_tuning = 1 + strength[:, None] * np.cos(2 * (thetas[None] - radial[:, None]))
    weights = sf_tuning[:, :, None] * ori_tuning[:, None, :]
    return (weights / weights.sum(axis=(1, 2), keepdims=True)).reshape(n, n_sf * n_ori)


# --------------------------------------------------------------------------- what each area computes
V1_WAVELENGTHS_DEG = (20 / 24, 20 / 12, 20 / 6)  # 1.2, 0.6 and 0.3 cycles per degree
V1_ORIENTATIONS = 8
TEXTURE_WAVELENGTH_DEG = 4.0
TEXTURE_ORIENTATIONS = 4
N_GABOR_CHANNELS = len(V1_WAVELENGTHS_DEG) * V1_ORIENTATIONS
N_TEXTURE_CHANNELS = len(V1_WAVELENGTHS_DEG) * (V1_ORIENTATIONS // 2) * TEXTURE_ORIENTATIONS


def gabor_energy(images: torch.Tensor, wavelengths_px, n_orientations: int) -> torch.Tensor:
    """Quadrature-pair (complex-cell) Gabor energy: ``(B, H, W) -> (B, n_wavelengths, n_orientations, H, W)``.

    The filters are Gaussians in the Fourier domain centred on one frequency (wavelength in
    pixels, orientation k * 180 / n_orientations degrees) with a radial std of 0.35 x that
    frequency (about 1.2 octaves full width at half height). Keeping one side of the spectrum makes
    the filter analytic: the magnitude of its output is sqrt(even^2 + odd^2), the local amplitude of
    that frequency band (a grating of amplitude A at the filter's frequency gives A). Images should
    be zero on the border (e.g. ``stimuli - 0.5`` in the aperture): the convolution is circular.
    """
    h, w = images.shape[-2:]
    bank = torch.as_tensor(_gabor_bank(h, w, tuple(float(wl) for wl in wavelengths_px), n_orientations),
                           device=images.device)  # (C, H, W)
    spectrum = torch.fft.fft2(images.to(torch.float32))[:, None]  # (B, 1, H, W)
    response = torch.fft.ifft2(spectrum * bank)
    energy = torch.hypot(response.real, response.imag)  # = response.abs(), several times faster on CPU
    return energy.reshape(images.shape[0], len(wavelengths_px), n_orientations, h, w)


@functools.lru_cache(maxsize=8)
def _gabor_bank(h: int, w: int, wavelengths_px: tuple, n_orientations: int) -> np.ndarray:
    """The Fourier-domain filters of :func:`gabor_energy`: ``complex64 (n_wavelengths * n_orientations, h, w)``."""
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


def texture_energy(energy: torch.Tensor, wavelength_px: float, n_orientations: int) -> torch.Tensor:
    """Second-order ("contrast of contrast") features: Gabor energy of compressed energy maps.

    ``energy`` (B, S, O, H, W) with even O -> ``(B, S * O/2 * n_orientations, H, W)``. Pairs of
    neighbouring orientations are summed, compressed by a square root, and each of those maps is
    filtered again with a coarser Gabor energy bank: a voxel reading these features responds to
    texture boundaries and to contrast that varies across its pRF.
    """
    b, s, o, h, w = energy.shape
    maps = energy.reshape(b, s, o // 2, 2, h, w).sum(3).sqrt().reshape(b, s * o // 2, h, w)
    second = gabor_energy(maps.reshape(-1, h, w), [wavelength_px], n_orientations)
    return second.reshape(b, -1, h, w)


class RandomVentralNet(nn.Module):
    """A fixed, untrained, seeded convolutional network standing in for the ventral stream (V4, LO).

    Three convolution layers, each followed by rectification and divisive normalisation (each unit
    divided by the local mean activity of all channels, Carandini & Heeger 2012), which make the
    features largely invariant to overall contrast. Input ``(B, H, W)`` images in [0, 1], resized to
    64 x 64; output the layer-2 and layer-3 maps, each ``(B, 32, 16, 16)``. Weights come from
    :data:`NETWORK_SEED` and never change; first-layer filters are smooth random blobs without DC.
    """

    channels = 32

    def __init__(self, seed: int = NETWORK_SEED):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.conv1 = nn.Conv2d(1, 16, 7, padding=3, bias=False)
        self.conv2 = nn.Conv2d(16, self.channels, 5, padding=2, bias=False)
        self.conv3 = nn.Conv2d(self.channels, self.channels, 3, padding=1, bias=False)
        with torch.no_grad():
            r = torch.arange(7, dtype=torch.float32) - 3
            window = torch.exp(-(r[:, None] ** 2 + r[None] ** 2) / (2 * 1.5 ** 2))
            for conv in (self.conv1, self.conv2, self.conv3):
                weight = torch.randn(conv.weight.shape, generator=gen)
                if conv is self.conv1:  # smooth it: a random blob-like filter
                    weight = F.conv2d(weight, window[None, None] / window.sum(), padding=3) * window
                weight -= weight.mean(dim=(1, 2, 3), keepdim=True)  # respond to structure, not to mean level
                conv.weight.copy_(weight / weight.flatten(1).norm(dim=1)[:, None, None, None])
        self.requires_grad_(False)

    @staticmethod
    def normalise(x: torch.Tensor) -> torch.Tensor:
        pool = F.avg_pool2d(x.mean(1, keepdim=True), 5, stride=1, padding=2, count_include_pad=False)
        return x / (pool + 0.1 * x.mean(dim=(1, 2, 3), keepdim=True) + 1e-6)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = images[:, None].to(torch.float32) - 0.5
        x = F.interpolate(x, size=(CNN_SIZE, CNN_SIZE), mode="area") if x.shape[-1] >= CNN_SIZE else \
            F.interpolate(x, size=(CNN_SIZE, CNN_SIZE), mode="bilinear", align_corners=False)
        x = F.avg_pool2d(self.normalise(self.conv1(x).abs()), 2)  # 32 x 32
        layer2 = F.max_pool2d(self.normalise(F.relu(self.conv2(x))), 2)  # 16 x 16
        layer3 = F.max_pool2d(self.normalise(F.relu(self.conv3(layer2))), 3, stride=1, padding=1)
        return layer2, layer3


def feature_maps(images: torch.Tensor, network: RandomVentralNet, config: SimulationConfig,
                 names=("gabor_energy", "texture", "cnn_layer2", "cnn_layer3")) -> dict:
    """The areas' feature maps for a batch ``(B, H, W)`` of stimuli: ``{name: (B, C, grid, grid)}``.

    "gabor_energy" (24 channels, H/2 grid), "texture" (24 first-order + 48 second-order channels,
    H/4 grid), "cnn_layer2" and "cnn_layer3" (32 channels, 16 x 16). Only ``names`` are computed.
    """
    deg_per_px = config.field_of_view_deg / config.image_size
    maps = {}
    with torch.no_grad():
        if "gabor_energy" in names or "texture" in names:
            energy = gabor_energy(images - 0.5, [wl / deg_per_px for wl in V1_WAVELENGTHS_DEG], V1_ORIENTATIONS)
            maps["gabor_energy"] = energy = F.avg_pool2d(energy.flatten(1, 2), 2)  # (B, 24, H/2, W/2)
        if "texture" in names:
            b, _, h, w = energy.shape
            texture = texture_energy(energy.reshape(b, len(V1_WAVELENGTHS_DEG), V1_ORIENTATIONS, h, w),
                                     TEXTURE_WAVELENGTH_DEG / (2 * deg_per_px), TEXTURE_ORIENTATIONS)
            maps["texture"] = torch.cat([F.avg_pool2d(energy, 2), F.avg_pool2d(texture, 2)], dim=1)
        if "cnn_layer2" in names or "cnn_layer3" in names:
            maps["cnn_layer2"], maps["cnn_layer3"] = network(images)
    return {name: maps[name] for name in names}


# --------------------------------------------------------------------------- measurement
def _measure(signal: dict, voxels: dict, config: SimulationConfig, rng: np.random.Generator, device):
    """Noisy trials from noise-free signals; z-scored with train statistics.

    Returns (train responses {roi: (N_train, V)}, test repeats {roi: (R, N_test, V)},
    test oracle {roi: (N_test, V)}), all float32, and adds ``snr`` and ``effective`` to the voxels.
    """
    rois = list(config.voxels)
    counts = [len(voxels[roi]) for roi in rois]
    # noise-free signal: unit variance over the train images, times the voxel's SNR
    snr, scaled = {}, {"train": {}, "test": {}}
    for roi in rois:
        mean, std = signal["train"][roi].mean(0), signal["train"][roi].std(0) + 1e-12
        snr[roi] = _draw_snr(roi, len(voxels[roi]), rng)
        for split in scaled:
            scaled[split][roi] = (signal[split][roi] - mean) / std * snr[roi]
    # trial noise: independent part + a part shared by neighbours (Gaussian smoothing in mm)
    positions = np.concatenate([voxels[roi].coords * np.asarray(config.voxel_size_mm) for roi in rois])
    positions = torch.as_tensor(positions, dtype=torch.float32, device=device)
    d2 = torch.cdist(positions, positions) ** 2 / config.noise_smoothing_mm ** 2
    kernel = torch.where(d2 < 25, torch.exp(-d2 / 2), torch.zeros_like(d2))  # cut at 5 sigma (no denormals)
    kernel = kernel / kernel.norm(dim=1, keepdim=True)
    lam = config.noise_correlation

    def trials(n_repeats: int, n_images: int) -> np.ndarray:
        shape = (n_repeats * n_images, positions.shape[0])
        own = rng.standard_normal(shape, dtype=np.float32)
        shared = torch.as_tensor(rng.standard_normal(shape, dtype=np.float32), device=device) @ kernel.T
        noise = math.sqrt(1 - lam) * own + math.sqrt(lam) * shared.cpu().numpy()
        return np.split(noise.reshape(n_repeats, n_images, -1), np.cumsum(counts)[:-1], axis=2)

    train_noise = trials(config.train_repeats, config.n_train)
    test_noise = trials(config.test_repeats, config.n_test)
    train, repeats, oracle = {}, {}, {}
    for roi, tr_noise, te_noise in zip(rois, train_noise, test_noise):
        train_resp = scaled["train"][roi] + tr_noise.mean(0)
        mean, std = train_resp.mean(0), train_resp.std(0)
        train[roi] = ((train_resp - mean) / std).astype(np.float32)
        repeats[roi] = ((scaled["test"][roi][None] + te_noise - mean) / std).astype(np.float32)
        oracle[roi] = ((scaled["test"][roi] - mean) / std).astype(np.float32)
        voxels[roi].extra["snr"] = snr[roi].astype(np.float32)
        voxels[roi].extra["effective"] = snr[roi] >= INEFFECTIVE_SNR
    return train, repeats, oracle


def _draw_snr(roi: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Per-voxel signal std / single-trial noise std: log-normal for effective voxels, ~0 otherwise."""
    area = CORTEX[roi]
    effective = np.zeros(n, dtype=bool)
    effective[rng.choice(n, size=int(round(area.effective_fraction * n)), replace=False)] = True
    snr = rng.uniform(0, INEFFECTIVE_SNR * 0.999, n)
    snr[effective] = np.clip(area.median_snr * np.exp(rng.normal(0, 0.6, effective.sum())), 0.03, 2.0)
    return snr
