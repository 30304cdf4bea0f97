"""The simulated experiment's sizes and its measurement: how noisy each area's voxels are.

Part of the simulated cortex (:mod:`.simulate`): :class:`SimulationConfig` (sizes of the experiment,
``for_profile``), :data:`CORTEX` (per area: features, pRF sizes, effective share and SNR) and
:func:`measure`, which turns noise-free signals into noisy, z-scored trials. The SNRs are set so
that the default subject meets the targets of :mod:`.calibration` (where the sources are).

Each voxel's signal is scaled to unit variance over the train images and multiplied by the voxel's
signal-to-noise ratio ``snr``; every trial adds unit-variance Gaussian noise that is partly shared
between neighbouring voxels (30 %). A share of the voxels is *ineffective* (snr < 0.015: almost no
stimulus signal), the same share in every area; the effective voxels' SNR is log-normal with a
median that falls from V1 to LO. Finally responses are z-scored per voxel with the train mean and
std (the same transform is applied to test trials and the oracle).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ..profiles import DEFAULT_PROFILE, check_profile

INEFFECTIVE_SNR = 0.015  # voxels below this signal/noise ratio carry almost no stimulus signal
SNR_SPREAD = 0.55  # s.d. of log(snr) over the effective voxels of an area (every area)
MAX_TRAIN_IMAGES = 20000


@dataclass
class AreaModel:
    """The ground truth of one simulated visual area (see the module docstring).

    features : "gabor_energy", "texture", "v4_conjunctions" or "lo_invariant"
    prf_sigma : (intercept, slope): pRF std in degrees = intercept + slope * eccentricity
    first_order_share : for "texture" areas, the share of each voxel's weight on first-order energy
    effective_fraction : fraction of voxels that carry stimulus signal
    median_snr : median signal std / single-trial noise std of the effective voxels (log-normal,
        s.d. of the log :data:`SNR_SPREAD`)
    input_share : the share of each voxel's (squared) read-out weight on the area's *input*, the
        texture energy that V2 and V3 compute, beside its own features (0: none; see
        :func:`.voxels.area_tuning`): the BOLD signal follows an area's synaptic input as well as
        its output (Logothetis et al. 2001)
    """

    features: str
    prf_sigma: tuple
    first_order_share: float
    effective_fraction: float
    median_snr: float
    input_share: float = 0.0


# Median SNR per area fitted to calibration.CALIBRATION_TARGETS on the oracle (simulation seeds 0-2
# pooled, bisection; SNR_SPREAD chosen among 0.4, 0.55, 0.7 for the oracle's best V1 voxels), on
# an NVIDIA H200 with generator 4 and kept for generator 5 (V1-V3 are unchanged; V4 and LO, now
# reading their input too, still pass the gate): see data/calibration/oracle_report.json.
CORTEX = {
    "V1": AreaModel("gabor_energy", (0.2, 0.12), 1.0, 0.9, 0.0999),
    "V2": AreaModel("texture", (0.3, 0.18), 0.5, 0.9, 0.088),
    "V3": AreaModel("texture", (0.4, 0.26), 0.3, 0.9, 0.0756),
    "V4": AreaModel("v4_conjunctions", (0.8, 0.40), 0.0, 0.9, 0.0675, input_share=0.5),
    "LO": AreaModel("lo_invariant", (1.5, 0.55), 0.0, 0.9, 0.0634, input_share=0.5),
}


@dataclass
class SimulationConfig:
    """Sizes of the simulated experiment. ``for_profile("full")`` is vim-1-shaped."""

    name: str = "full"
    image_size: int = 128
    n_train: int = 1750
    n_test: int = 120
    train_repeats: int = 2
    test_repeats: int = 13
    voxels: dict = field(
        default_factory=lambda: {"V1": 800, "V2": 700, "V3": 600, "V4": 500, "LO": 400}
    )
    field_of_view_deg: float = 20.0
    eccentricity_range_deg: tuple = (0.3, 9.5)
    noise_correlation: float = 0.3
    noise_smoothing_mm: float = 2.0
    volume_shape: tuple = (64, 64, 18)
    voxel_size_mm: tuple = (2.0, 2.0, 2.5)
    batch_size: int = 32

    @classmethod
    def for_profile(cls, profile: str = DEFAULT_PROFILE, **changes) -> "SimulationConfig":
        """``"full"`` (alias ``"default"``): vim-1 sizes; ``"quick"``: a few seconds on a CPU, for
        CI; then ``changes`` (fields)."""
        if check_profile(profile) == "full":
            return replace(cls(), **changes)
        base = cls(
            name="quick",
            image_size=64,
            n_train=300,
            n_test=40,
            voxels={"V1": 120, "V2": 110, "V3": 100, "V4": 90, "LO": 80},
        )
        return replace(base, **changes)

    def check(self) -> None:
        """Raise a ValueError that says what to change if the sizes cannot work."""
        if self.image_size % 4 or self.image_size < 32:
            raise ValueError(
                f"image_size must be a multiple of 4 and at least 32, got {self.image_size}"
            )
        if not 10 <= self.n_train <= MAX_TRAIN_IMAGES or self.n_test < 3:
            raise ValueError(
                f"need 10 to {MAX_TRAIN_IMAGES} train images and at least 3 test images, got "
                f"{self.n_train} and {self.n_test}"
            )
        if self.train_repeats < 1 or self.test_repeats < 2:
            raise ValueError(
                "need train_repeats >= 1 and test_repeats >= 2 (the noise ceiling needs repeats)"
            )
        unknown = [roi for roi in self.voxels if roi not in CORTEX]
        if unknown or not self.voxels:
            raise ValueError(
                f"voxels must map ROIs among {list(CORTEX)} to counts, got {self.voxels}"
            )
        if 3 * len(self.voxels) > self.volume_shape[2]:
            raise ValueError(
                f"a volume {self.volume_shape} has room for {self.volume_shape[2] // 3} ROI slabs, "
                f"not {len(self.voxels)}"
            )
        for roi, n in self.voxels.items():
            n_ecc, n_ang = hemifield_grid(n)
            if n < 4 or n_ecc > self.volume_shape[0] // 2 - 2 or n_ang > self.volume_shape[1]:
                raise ValueError(
                    f"{n} voxels for {roi} do not fit a hemisphere slab of the volume "
                    f"{self.volume_shape}; use between 4 and about 3000 voxels per ROI"
                )


def hemifield_grid(n_voxels: int) -> tuple[int, int]:
    """(eccentricity steps, polar-angle steps) of one hemisphere's 2-slice grid for an ROI."""
    cells = math.ceil(math.ceil(n_voxels / 2) / 2)
    n_ecc = math.ceil(math.sqrt(cells / 2))
    return n_ecc, math.ceil(cells / n_ecc)


def measure(
    signal: dict, voxels: dict, config: SimulationConfig, noise_seed: np.random.SeedSequence, device
):
    """Noisy trials from noise-free signals; z-scored with train statistics.

    Returns (train responses {roi: (N_train, V)}, test repeats {roi: (R, N_test, V)},
    test oracle {roi: (N_test, V)}), all float32, and adds ``snr`` and ``effective`` to the voxels.
    """
    rois = list(config.voxels)
    counts = [len(voxels[roi]) for roi in rois]
    snr_rng, train_rng, test_rng = (np.random.default_rng(seq) for seq in noise_seed.spawn(3))
    # noise-free signal: unit variance over the train images, times the voxel's SNR
    snr, scaled = {}, {"train": {}, "test": {}}
    for roi in rois:
        mean, std = signal["train"][roi].mean(0), signal["train"][roi].std(0) + 1e-12
        snr[roi] = draw_snr(roi, len(voxels[roi]), snr_rng)
        for split in scaled:
            scaled[split][roi] = (signal[split][roi] - mean) / std * snr[roi]
    # trial noise: independent part + a part shared by neighbours (Gaussian smoothing in mm)
    positions = np.concatenate(
        [voxels[roi].coords * np.asarray(config.voxel_size_mm) for roi in rois]
    )
    positions = torch.as_tensor(positions, dtype=torch.float32, device=device)
    d2 = torch.cdist(positions, positions) ** 2 / config.noise_smoothing_mm**2
    kernel = torch.where(
        d2 < 25, torch.exp(-d2 / 2), torch.zeros_like(d2)
    )  # cut at 5 sigma (no denormals)
    kernel = kernel / kernel.norm(dim=1, keepdim=True)
    lam, edges = config.noise_correlation, np.cumsum(counts)[:-1]
    train_noise = mean_trial_noise(config.train_repeats, config.n_train, train_rng, kernel, lam)
    test_noise = trial_noise(config.test_repeats, config.n_test, test_rng, kernel, lam)
    train, repeats, oracle = {}, {}, {}
    for roi, tr_noise, te_noise in zip(
        rois, np.split(train_noise, edges, axis=1), np.split(test_noise, edges, axis=2)
    ):
        train_resp = scaled["train"][roi] + tr_noise
        mean, std = train_resp.mean(0), train_resp.std(0)
        train[roi] = ((train_resp - mean) / std).astype(np.float32)
        repeats[roi] = ((scaled["test"][roi][None] + te_noise - mean) / std).astype(np.float32)
        oracle[roi] = ((scaled["test"][roi] - mean) / std).astype(np.float32)
        voxels[roi].extra["snr"] = snr[roi].astype(np.float32)
        voxels[roi].extra["effective"] = snr[roi] >= INEFFECTIVE_SNR
    return train, repeats, oracle


TRIAL_CHUNK = 2**25  # noise values drawn at once when many trials are averaged (128 MB)


def trial_noise(
    n_repeats: int, n_images: int, rng: np.random.Generator, kernel: torch.Tensor, shared: float
) -> np.ndarray:
    """The noise of ``n_repeats`` trials of ``n_images`` images: ``float32 (R, N, V)``.

    Unit-variance Gaussian; a share ``shared`` of its variance is smoothed over neighbouring voxels
    by ``kernel (V, V)`` (rows of unit norm, on the device that smooths). ``rng`` draws the
    independent part of every trial, then the part to smooth.
    """
    shape = (n_repeats * n_images, kernel.shape[0])
    own = rng.standard_normal(shape, dtype=np.float32)
    smooth = torch.as_tensor(rng.standard_normal(shape, dtype=np.float32), device=kernel.device)
    smooth = (smooth @ kernel.T).cpu().numpy()
    noise = math.sqrt(1 - shared) * own + math.sqrt(shared) * smooth
    return noise.reshape(n_repeats, n_images, -1)


def mean_trial_noise(
    n_repeats: int, n_images: int, rng: np.random.Generator, kernel: torch.Tensor, shared: float
) -> np.ndarray:
    """The mean over the trials of :func:`trial_noise` (the same draws): ``float32 (N, V)``.

    Hundreds of trials (a quiet control experiment) are drawn a few at a time, at most
    :data:`TRIAL_CHUNK` numbers at once, and summed; smoothing is linear, so the mean of the parts
    to smooth is smoothed once. Little memory and time, the same noise up to rounding.
    """
    n_voxels = kernel.shape[0]
    if n_repeats * n_images * n_voxels <= TRIAL_CHUNK:
        return trial_noise(n_repeats, n_images, rng, kernel, shared).mean(0)
    step = max(1, TRIAL_CHUNK // (n_images * n_voxels))
    means = []
    for _ in range(2):  # the independent part of every trial, then the part to smooth
        total = np.zeros((n_images, n_voxels))
        for start in range(0, n_repeats, step):
            n = min(step, n_repeats - start)
            draws = rng.standard_normal((n * n_images, n_voxels), dtype=np.float32)
            total += draws.reshape(n, n_images, n_voxels).sum(0)
        means.append(total / n_repeats)
    smooth = torch.as_tensor(means[1], dtype=kernel.dtype, device=kernel.device) @ kernel.T
    noise = math.sqrt(1 - shared) * means[0] + math.sqrt(shared) * smooth.cpu().numpy()
    return noise.astype(np.float32)


def draw_snr(roi: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Per-voxel signal std / single-trial noise std: log-normal for effective voxels, ~0
    otherwise."""
    area = CORTEX[roi]
    effective = np.zeros(n, dtype=bool)
    effective[rng.choice(n, size=int(round(area.effective_fraction * n)), replace=False)] = True
    snr = rng.uniform(0, INEFFECTIVE_SNR * 0.999, n)
    snr[effective] = np.clip(
        area.median_snr * np.exp(rng.normal(0, SNR_SPREAD, effective.sum())), 0.03, 2.0
    )
    return snr
