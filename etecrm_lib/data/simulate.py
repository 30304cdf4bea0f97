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

The areas form one hierarchy, each stage built on the one before (``ground_truth="cortex"``, the
default):

- V1: complex-cell Gabor energy, 3 spatial frequencies x 8 orientations. Preferred spatial
  frequency falls with eccentricity; a mild preference for radial orientations.
- V2, V3: larger pRFs over second-order (texture) features - the Gabor energy of the local Gabor
  energy maps ("contrast of contrast"; Freeman & Simoncelli 2011, Kay et al. 2013) - plus some
  first-order energy (more in V2 than V3).
- V4: units tuned to *conjunctions* of V1 outputs: each sums a few orientation-energy maps at
  particular relative positions (excitatory) and is suppressed by others (inhibitory), then is
  rectified, divisively normalised (Carandini & Heeger 2012) and max-pooled over nearby positions.
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

Signal and noise, calibrated per area to vim-1
----------------------------------------------
Each voxel's signal is scaled to unit variance over the train images and multiplied by the voxel's
signal-to-noise ratio ``snr``; every trial adds unit-variance Gaussian noise that is partly shared
between neighbouring voxels (30 %). A share of the voxels is *ineffective* (snr < 0.015: almost no
stimulus signal), a share that grows from V1 to LO; the effective voxels' SNR is log-normal with a
median that falls from V1 to LO. Finally responses are z-scored per voxel with the train mean and
std (the same transform is applied to test trials and the oracle).

The SNRs are set so that the default subject matches these targets (:data:`CALIBRATION_TARGETS`).
"Ceiling" is the noise ceiling of the mean of the 13 test repeats, computed from the simulation's
known noise-free signal (the *true* ceiling: ``sqrt(s / (s + n / 13))`` with ``s`` the signal's
variance over the test images and ``n`` the single-trial noise variance); "predictable" is the
share of voxels whose true ceiling exceeds the p < 0.001 significance threshold of r over 120 test
images (0.28), i.e. voxels that a perfect model would predict significantly:

====  ====================  ========================  =============================================
ROI   predictable fraction  median ceiling (follows)  best voxels (a good model, e.g. Gabor on V1)
====  ====================  ========================  =============================================
V1    0.52                  0.29                   r near 0.8
V2    0.45                  0.26
V3    0.38                  0.23
V4    0.30                  0.20
LO    0.22                  0.17
====  ====================  ========================  =============================================

Where they come from: on vim-1 the best voxels reach r of about 0.8 on the 120 test images (best
voxel 0.816 with deep-network features, St-Yves & Naselaris 2018; V1 voxels of the Gabor model of
Kay et al. 2008 reach similar values), and the signal-to-noise ratio of the voxels and the share
a model predicts fall from V1 to V3 (Kay et al. 2008, Supplementary Table 1) and further to V4 and
LO (Naselaris et al. 2009); the best models predict over 20 % of the voxels of every area V1-LO
significantly (Zhang et al. 2019). vim-1 publishes no single trials, so its noise ceilings are not
known exactly: the predictable fractions between these anchors are our reading, chosen once and not
to favour any model. Every area has the same share of voxels without stimulus signal (10 %) and the
same spread of log SNR (:data:`SNR_SPREAD`, set so that the best V1 voxels reach about 0.8); only
the median SNR falls from V1 to LO, fitted to the predictable fraction. The median ceilings then
follow; they are listed as targets too, so that a change of the generator shows up.

Why the true ceiling and not the one estimated from the repeats (:func:`evaluation.noise_ceiling`,
which :func:`calibration_summary` reports beside it): with 120 images x 13 repeats the estimated
signal variance scatters by about 0.01 (in units of the single-trial noise variance), more than
the whole signal variance of a typical V3-LO voxel (0.003-0.005). An ROI's *estimated* median
ceiling therefore jumps between 0 and 0.15 from one simulation seed to the next, and the estimated
predictable fraction counts about a quarter of the voxels without any signal (measured on seeds
0-3 of an earlier version of this generator). A real experiment with vim-1's design has the same
problem; the simulation can calibrate what it controls. ``tests/test_simulate.py`` checks the
default subject against the targets (tolerance bands) and the estimator against the truth;
``benchmarks/bench_calibration.py`` prints target against measured for several seeds.

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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..device import get_device
from ..profiles import DEFAULT_PROFILE, check_profile
from .dataset import EncodingDataset, Split, VoxelInfo
from .images import TEST_PHOTOS, TRAIN_PHOTOS, load_photos, make_stimuli
from .npz import load_npz, save_npz

GENERATOR_VERSION = 3  # bump when the simulation changes: old cache files are then ignored
GROUND_TRUTHS = ("cortex", "gabor", "cnn")  # the simulated cortex and the two control cortices
COMPRESSION = 0.5  # signal = drive ** COMPRESSION ("cortex" only; the controls are linear)
INEFFECTIVE_SNR = 0.015  # voxels below this signal/noise ratio carry almost no stimulus signal
SNR_SPREAD = 0.6  # s.d. of log(snr) over the effective voxels of an area (every area)
MAX_TRAIN_IMAGES = 20000
GABOR_CONTROL_FEATURES = 12  # Gabor pyramid features per voxel in the "gabor" control

# Per ROI: median noise ceiling and fraction of predictable voxels of the default subject (see the
# module docstring for the sources); BEST_V1_R: r of the best V1 voxels for a good model.
CALIBRATION_TARGETS = {  # on the true noise ceiling (module docstring)
    "V1": {"median_ceiling": 0.29, "predictable_fraction": 0.52},
    "V2": {"median_ceiling": 0.26, "predictable_fraction": 0.45},
    "V3": {"median_ceiling": 0.23, "predictable_fraction": 0.38},
    "V4": {"median_ceiling": 0.20, "predictable_fraction": 0.30},
    "LO": {"median_ceiling": 0.17, "predictable_fraction": 0.22},
}
BEST_V1_R = 0.8


# --------------------------------------------------------------------------- configuration
@dataclass
class AreaModel:
    """The ground truth of one simulated visual area (see the module docstring).

    features : "gabor_energy", "texture", "v4_conjunctions" or "lo_invariant"
    prf_sigma : (intercept, slope): pRF std in degrees = intercept + slope * eccentricity
    first_order_share : for "texture" areas, the share of each voxel's weight on first-order energy
    effective_fraction : fraction of voxels that carry stimulus signal
    median_snr : median signal std / single-trial noise std of the effective voxels (log-normal,
        s.d. of the log :data:`SNR_SPREAD`)
    """

    features: str
    prf_sigma: tuple
    first_order_share: float
    effective_fraction: float
    median_snr: float


CORTEX = {  # effective fraction and SNR: calibrated to CALIBRATION_TARGETS
    "V1": AreaModel("gabor_energy", (0.2, 0.12), 1.0, 0.9, 0.085),
    "V2": AreaModel("texture", (0.3, 0.18), 0.5, 0.9, 0.076),
    "V3": AreaModel("texture", (0.4, 0.26), 0.3, 0.9, 0.067),
    "V4": AreaModel("v4_conjunctions", (0.8, 0.40), 0.0, 0.9, 0.058),
    "LO": AreaModel("lo_invariant", (1.5, 0.55), 0.0, 0.9, 0.046),
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
    def for_profile(cls, name: str = DEFAULT_PROFILE) -> "SimulationConfig":
        """``"full"`` (= ``"default"``): vim-1 sizes; ``"quick"``: a few seconds on a CPU, for CI."""
        if check_profile(name) == "full":
            return cls()
        return cls(name="quick", image_size=64, n_train=300, n_test=40,
                   voxels={"V1": 120, "V2": 110, "V3": 100, "V4": 90, "LO": 80})

    def check(self) -> None:
        """Raise a ValueError that says what to change if the sizes cannot work."""
        if self.image_size % 4 or self.image_size < 32:
            raise ValueError(f"image_size must be a multiple of 4 and at least 32, got {self.image_size}")
        if not 10 <= self.n_train <= MAX_TRAIN_IMAGES or self.n_test < 3:
            raise ValueError(f"need 10 to {MAX_TRAIN_IMAGES} train images and at least 3 test images, got "
                             f"{self.n_train} and {self.n_test}")
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
             cache: bool = True, progress: bool | None = None, ground_truth: str = "cortex",
             n_train: int | None = None) -> EncodingDataset:
    """The simulated vim-1-like dataset of one subject (see the module docstring).

    Parameters
    ----------
    subject : int >= 1. Subjects see the same images; their voxels differ.
    profile : "default" (= "full": 1750/120 images of 128 px, 3000 voxels, about a minute of CPU time,
        seconds on a GPU) or "quick" (300/40 images of 64 px, 500 voxels, a few seconds), or a
        :class:`SimulationConfig`.
    seed : int >= 0. Another seed gives other images, other voxels and another V4/LO network.
    cache : keep the result in ``cache_dir("sim")`` and reuse it (verified before use).
    progress : show a progress bar (default: for the full profile only).
    ground_truth : "cortex" (the simulated visual hierarchy), or a control cortex: "gabor" (a linear
        read-out of the Gabor wavelet pyramid) or "cnn" (a read-out of a random network with the
        released ETECRM architecture).
    n_train : number of train images (default: the profile's; up to :data:`MAX_TRAIN_IMAGES`). The
        test images and the voxels do not depend on it.

    The same arguments give the same dataset on the same machine (on a GPU the numbers differ from
    the CPU's only by floating-point rounding).
    """
    config = profile if isinstance(profile, SimulationConfig) else SimulationConfig.for_profile(profile)
    if n_train is not None:
        if isinstance(n_train, bool) or not isinstance(n_train, (int, np.integer)):
            raise ValueError(f"n_train must be an integer number of train images, got {n_train!r}")
        config = replace(config, n_train=int(n_train))
    config.check()
    if ground_truth not in GROUND_TRUTHS:
        raise ValueError(f"ground_truth must be one of {GROUND_TRUTHS} (\"cortex\" is the simulated visual "
                         f"hierarchy, the others are control cortices), got {ground_truth!r}")
    if isinstance(subject, bool) or not isinstance(subject, (int, np.integer)) or subject < 1:
        raise ValueError(f"subject must be a positive integer, got {subject!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    subject, seed = int(subject), int(seed)
    key = simulation_key(config, subject, seed, ground_truth)
    path = None
    if cache:
        from ..storage import cache_dir

        path = cache_dir("sim") / (f"sim_{config.name}_{ground_truth}_n{config.n_train}_subject{subject}_seed{seed}_"
                                   f"{key[:16]}.npz")
        dataset = _load_verified(path, key, config)
        if dataset is not None:
            return dataset
    dataset = generate(config, subject, seed, progress=config.name == "full" if progress is None else progress,
                       ground_truth=ground_truth)
    if path is not None:
        save_npz(dataset, path)
    return dataset


def network_seed(seed: int) -> int:
    """The seed of the random V4/LO weights (and of the control network) of simulation ``seed``."""
    return int(np.random.SeedSequence([20190728, int(seed)]).generate_state(1)[0])


def simulation_key(config: SimulationConfig, subject: int, seed: int, ground_truth: str = "cortex") -> str:
    """SHA-256 of everything the simulation depends on (the cache file's identity)."""
    params = {"version": GENERATOR_VERSION, "subject": subject, "seed": seed, "config": asdict(config),
              "ground_truth": ground_truth, "cortex": {roi: asdict(area) for roi, area in CORTEX.items()},
              "network_seed": network_seed(seed), "snr_spread": SNR_SPREAD, "compression": COMPRESSION,
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
def generate(config: SimulationConfig, subject: int = 1, seed: int = 0, progress: bool = False,
             ground_truth: str = "cortex") -> EncodingDataset:
    """Run the simulation without any cache (see :func:`simulate`)."""
    from tqdm.auto import tqdm

    start = time.perf_counter()
    device = get_device()
    # Images depend on the seed only (subjects see the same images); voxels on subject and seed.
    # Train and test images, and train and test noise, come from separate streams: the test split
    # does not change with n_train.
    image_seeds = np.random.SeedSequence([20190726, seed]).spawn(2)
    voxel_seed, noise_seed = np.random.SeedSequence([20190727, seed, subject]).spawn(2)
    voxel_rng = np.random.default_rng(voxel_seed)
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
    bar.set_description("simulating: responses")
    if ground_truth == "gabor":
        signal = _gabor_control_signal(stimuli, voxels, config, voxel_rng, device)
        bar.update(n_batches)
    else:
        signal = _network_signal(stimuli, voxels, config, voxel_rng, device, ground_truth, network_seed(seed), bar)

    bar.set_description("simulating: measurement noise")
    train, test_repeats, test_oracle = _measure(signal, voxels, config, noise_seed, device)
    bar.update()
    bar.close()

    info = {
        "source": "simulated visual cortex (etecrm_lib.data.simulate)",
        "generator_version": GENERATOR_VERSION, "profile": config.name, "seed": seed,
        "ground_truth": ground_truth, "network_seed": network_seed(seed), "n_train": config.n_train,
        "cache_key": simulation_key(config, subject, seed, ground_truth),
        "field_of_view_deg": config.field_of_view_deg, "train_repeats": config.train_repeats,
        "photo_sources": {"train": sorted(train_photos), "test": sorted(test_photos)},
        "image_sources": sources,
        "areas": {roi: _describe_area(roi, ground_truth) for roi in config.voxels},
        "noise": (f"Gaussian per trial, unit variance, a share of {config.noise_correlation} smoothed over "
                  f"{config.noise_smoothing_mm} mm between neighbouring voxels"),
        "response_units": "z-scored per voxel with the train mean and std (same transform on test and oracle)",
        "generation_seconds": round(time.perf_counter() - start, 1),
    }
    test_means = {roi: reps.mean(axis=0) for roi, reps in test_repeats.items()}
    return EncodingDataset("sim", subject, Split(stimuli["train"], train),
                           Split(stimuli["test"], test_means, test_repeats, test_oracle), voxels, info)


def _network_signal(stimuli: dict, voxels: dict, config: SimulationConfig, rng: np.random.Generator, device,
                    ground_truth: str, net_seed: int, bar) -> dict:
    """Noise-free signals ``{split: {roi: float64 (N, V)}}`` of the cortex or of the "cnn" control."""
    if ground_truth == "cnn":
        network = ReleasedCNN(net_seed).to(device).eval()
        area = {roi: _cnn_control_readout(voxels[roi].extra, config, rng, device) for roi in config.voxels}
    else:
        network = VentralStream(net_seed).to(device).eval()
        area = {roi: _area_readout(roi, voxels[roi].extra, config, rng, device) for roi in config.voxels}
    needed = sorted({features for features, _, _ in area.values()})
    # each channel divided by its mean over the first 64 train images: channels of any scale weigh alike
    calibration = torch.as_tensor(stimuli["train"][:64], device=device)
    scales = {name: maps.mean(dim=(0, 2, 3)).clamp_min(1e-12)
              for name, maps in feature_maps(calibration, network, config, needed).items()}
    signal = {split: {roi: [] for roi in config.voxels} for split in stimuli}
    for split in ("train", "test"):
        for batch in torch.as_tensor(stimuli[split]).split(config.batch_size):
            maps = feature_maps(batch.to(device), network, config, needed)
            for roi, (features, prf, weights) in area.items():
                pooled = maps[features].flatten(2) @ prf.T / scales[features][:, None]  # (B, C, V)
                drive = torch.einsum("bcv,vc->bv", pooled, weights)
                if ground_truth == "cortex":
                    drive = drive.clamp_min(0).pow(COMPRESSION)
                signal[split][roi].append(drive.cpu().double().numpy())
            bar.update()
    return {split: {roi: np.concatenate(parts) for roi, parts in by_roi.items()} for split, by_roi in signal.items()}


def _gabor_control_signal(stimuli: dict, voxels: dict, config: SimulationConfig, rng: np.random.Generator,
                          device) -> dict:
    """The "gabor" control: each voxel a sparse non-negative sum of Gabor pyramid features near its pRF.

    Voxel v picks :data:`GABOR_CONTROL_FEATURES` features of ``gabor_features`` (default
    :class:`GaborConfig`, log nonlinearity) without replacement, with probabilities proportional to
    the overlap of each filter's Gaussian envelope with the voxel's pRF, and weighs them with
    exponential random weights. Returns ``{split: {roi: float64 (N, V)}}``.
    """
    from ..features.gabor import GaborConfig, gabor_features, gabor_layout

    gabor = GaborConfig()
    layout = gabor_layout(config.image_size, gabor)
    deg = config.field_of_view_deg / config.image_size
    centre = (config.image_size - 1) / 2
    fx, fy, fs = (layout["x"] - centre) * deg, -(layout["y"] - centre) * deg, layout["sigma"] * deg
    readout = {}
    for roi in config.voxels:
        extra = voxels[roi].extra
        weights = np.zeros((fx.size, len(extra["prf_x"])), dtype=np.float32)
        for v, (x, y, sigma) in enumerate(zip(extra["prf_x"], extra["prf_y"], extra["prf_sigma"])):
            spread = sigma ** 2 + fs ** 2
            overlap = np.exp(-((fx - x) ** 2 + (fy - y) ** 2) / (2 * spread)) / spread
            picks = rng.choice(fx.size, GABOR_CONTROL_FEATURES, replace=False, p=overlap / overlap.sum())
            weights[picks, v] = rng.exponential(1.0, GABOR_CONTROL_FEATURES)
        readout[roi] = torch.as_tensor(weights)
    signal = {}
    for split, images in stimuli.items():
        features = torch.as_tensor(gabor_features(images, gabor, device=device, cache=False, progress=False))
        signal[split] = {roi: (features @ weights).double().numpy() for roi, weights in readout.items()}
    return signal


def _describe_area(roi: str, ground_truth: str = "cortex") -> str:
    area = CORTEX[roi]
    a, b = area.prf_sigma
    prf = f"pRF sigma = {a} + {b} x eccentricity (deg)"
    if ground_truth == "gabor":
        return (f"control: sparse non-negative linear read-out of {GABOR_CONTROL_FEATURES} Gabor wavelet pyramid "
                f"features near the pRF; {prf}")
    if ground_truth == "cnn":
        return f"control: non-negative read-out of a random network with the released ETECRM architecture; {prf}"
    what = {
        "gabor_energy": "complex-cell Gabor energy (3 spatial frequencies x 8 orientations)",
        "texture": f"second-order texture energy, {area.first_order_share:.0%} first-order Gabor energy",
        "v4_conjunctions": "rectified conjunctions of V1 orientation energy, max-pooled over positions (per scale)",
        "lo_invariant": "conjunctions of V4 outputs after a maximum over scales, max-pooled over positions",
    }[area.features]
    return f"{what}; {prf}; compressive power {COMPRESSION}"


def true_noise_ceiling(dataset: EncodingDataset, roi: str) -> np.ndarray:
    """The noise ceiling of the mean of the test repeats, from the known noise-free signal: ``(V,)``.

    ``sqrt(s / (s + n / R))``: ``s`` is the variance of the noise-free test signal
    (``dataset.test.oracle``) over the test images, ``n`` the single-trial noise variance (the
    variance over the R repeats, averaged over images: 1,500 trials give it to about 4 %).
    """
    repeats = np.asarray(dataset.test.repeats[roi], dtype=np.float64)
    signal_var = np.asarray(dataset.test.oracle[roi], dtype=np.float64).var(axis=0, ddof=1)
    noise_var = repeats.var(axis=0, ddof=1).mean(axis=0)
    return np.sqrt(signal_var / (signal_var + noise_var / repeats.shape[0]))


def calibration_summary(dataset: EncodingDataset) -> dict:
    """Per ROI, what :data:`CALIBRATION_TARGETS` describes, measured on ``dataset``'s test images.

    Returns ``{roi: {"median_ceiling", "predictable_fraction", "estimated_median_ceiling",
    "estimated_predictable_fraction", "target_median_ceiling", "target_predictable_fraction"}}``:
    the median true noise ceiling (:func:`true_noise_ceiling`) and the share of voxels whose ceiling
    exceeds the p < 0.001 threshold of r over the test images
    (:func:`evaluation.significance_threshold`); the ``estimated_`` pair is the same from the ceiling
    estimated from the repeats alone (:func:`evaluation.noise_ceiling`), as an experiment sees it.
    """
    from .. import evaluation

    threshold = evaluation.significance_threshold(dataset.test.n_images, p=1e-3)
    out = {}
    for roi in dataset.rois:
        ceiling = true_noise_ceiling(dataset, roi)
        estimated = np.asarray(evaluation.noise_ceiling(dataset.test.repeats[roi]), dtype=np.float64)
        target = CALIBRATION_TARGETS.get(roi, {})
        out[roi] = {"median_ceiling": float(np.median(ceiling)),
                    "predictable_fraction": float(np.mean(ceiling > threshold)),
                    "estimated_median_ceiling": float(np.median(estimated)),
                    "estimated_predictable_fraction": float(np.mean(estimated > threshold)),
                    "target_median_ceiling": target.get("median_ceiling"),
                    "target_predictable_fraction": target.get("predictable_fraction")}
    return out


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


FEATURE_GRID = {"v4_conjunctions": 16, "lo_invariant": 8}  # cells across the field of view
V1_GRID = 32  # V1 energy is pooled on at most 32 x 32 cells (0.625 deg): pRF pooling stays cheap


def _area_readout(roi: str, prfs: dict, config: SimulationConfig, rng: np.random.Generator, device):
    """(feature set name, pRF weights (V, grid^2), channel weights (V, C)) of one ROI's voxels."""
    area = CORTEX[roi]
    n = prfs["prf_x"].size
    grid = {"gabor_energy": min(V1_GRID, config.image_size // 2), "texture": config.image_size // 4}.get(area.features)
    if area.features == "gabor_energy":
        weights = _v1_channel_weights(prfs, config, rng)
    elif area.features == "texture":
        first = rng.dirichlet(np.full(N_GABOR_CHANNELS, 0.5), size=n) * area.first_order_share
        second = rng.dirichlet(np.full(N_TEXTURE_CHANNELS, 0.3), size=n) * (1 - area.first_order_share)
        weights = np.concatenate([first, second], axis=1)
    else:
        channels = VentralStream.v4_outputs if area.features == "v4_conjunctions" else VentralStream.lo_units
        grid = FEATURE_GRID[area.features]
        weights = rng.dirichlet(np.full(channels, 0.3), size=n)
    prf = prf_weights(prfs["prf_x"], prfs["prf_y"], prfs["prf_sigma"], grid, config.field_of_view_deg, device)
    return area.features, prf, torch.as_tensor(weights, dtype=torch.float32, device=device)


def _cnn_control_readout(prfs: dict, config: SimulationConfig, rng: np.random.Generator, device):
    """The "cnn" control: pRF over the network's last map x sparse non-negative channel weights.

    This is a special case of ETECRM's read-out ``features @ (W * W) + b`` (non-negative weights on
    the flattened 128 x H/8 x W/8 map), so the end-to-end model can represent it exactly.
    """
    n = prfs["prf_x"].size
    weights = rng.dirichlet(np.full(ReleasedCNN.channels, 0.3), size=n)
    prf = prf_weights(prfs["prf_x"], prfs["prf_y"], prfs["prf_sigma"], config.image_size // 8,
                      config.field_of_view_deg, device)
    return "released_cnn", prf, torch.as_tensor(weights, dtype=torch.float32, device=device)


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


def normalise(x: torch.Tensor, size: int = 5) -> torch.Tensor:
    """Divisive normalisation (Carandini & Heeger 2012): each unit over the local mean of all channels.

    ``x (B, C, H, W) >= 0``; the pool is the mean over channels and a ``size x size`` neighbourhood,
    plus a tenth of the image's mean activity, so overall contrast matters little.
    """
    pool = F.avg_pool2d(x.mean(1, keepdim=True), size, stride=1, padding=size // 2, count_include_pad=False)
    return x / (pool + 0.1 * x.mean(dim=(1, 2, 3), keepdim=True) + 1e-6)


def conjunction_weights(n_units: int, n_inputs: int, size: int, n_excitatory: int, n_inhibitory: int,
                        generator: torch.Generator) -> torch.Tensor:
    """Sparse random conv weights ``(n_units, n_inputs, size, size)``: each unit a conjunction of parts.

    Each unit sums ``n_excitatory`` (input channel, position) pairs with weights in [0.5, 1] and
    subtracts ``n_inhibitory`` others with weights in [0.25, 0.5]; everything else is 0. After a
    rectifying threshold the unit answers when its parts appear together in their places.
    """
    weight = torch.zeros(n_units, n_inputs * size * size)
    for unit in range(n_units):
        parts = torch.randperm(n_inputs * size * size, generator=generator)[: n_excitatory + n_inhibitory]
        strength = torch.rand(len(parts), generator=generator)
        weight[unit, parts[:n_excitatory]] = 0.5 + 0.5 * strength[:n_excitatory]
        weight[unit, parts[n_excitatory:]] = -(0.25 + 0.25 * strength[n_excitatory:])
    return weight.reshape(n_units, n_inputs, size, size)


class VentralStream(nn.Module):
    """V4 and LO of the simulated cortex, built on its V1 (see the module docstring).

    Input: V1 complex-cell energy ``(B, S, O, g, g)`` (S = 3 scales, O = 8 orientations on a g x g
    grid over the field of view); it is averaged to a 32 x 32 grid (0.625 deg cells for 20 deg) and
    normalised per scale. V4: 32 conjunction units of 5 x 5 cells per scale (the same weights at
    every scale), rectified above a threshold of 1 (in units of the normalised input), normalised,
    max-pooled over 3 x 3 cells, stride 2: ``(B, 96, 16, 16)``. LO: the maximum over the three
    scales, then 32 conjunctions of 3 x 3 V4 cells, rectified, normalised, max-pooled 3 x 3, stride 2:
    ``(B, 32, 8, 8)``. Weights come from ``seed`` (:func:`network_seed`) and never change.
    """

    grid = 32
    v4_units = 32
    v4_outputs = 3 * 32  # V4 units are scale-specific: 3 scales x 32 units
    lo_units = 32

    def __init__(self, seed: int):
        super().__init__()
        gen = torch.Generator().manual_seed(int(seed))
        self.register_buffer("v4_weight", conjunction_weights(self.v4_units, V1_ORIENTATIONS, 5, 3, 2, gen))
        self.register_buffer("lo_weight", conjunction_weights(self.lo_units, self.v4_units, 3, 3, 1, gen))

    def forward(self, v1_energy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, n_scales, n_ori = v1_energy.shape[:3]
        x = F.adaptive_avg_pool2d(v1_energy.flatten(0, 1), self.grid)  # (B * S, O, 32, 32)
        x = normalise(x)
        v4 = F.relu(F.conv2d(x, self.v4_weight, padding=2) - 1.0)
        v4 = F.max_pool2d(normalise(v4), 3, stride=2, padding=1)  # (B * S, 32, 16, 16)
        v4 = v4.reshape(b, n_scales, self.v4_units, self.grid // 2, self.grid // 2)
        lo = F.relu(F.conv2d(normalise(v4.amax(1)), self.lo_weight, padding=1) - 1.0)
        lo = F.max_pool2d(normalise(lo), 3, stride=2, padding=1)  # (B, 32, 8, 8)
        return v4.flatten(1, 2), lo


class ReleasedCNN(nn.Module):
    """A random network with the ETECRM architecture the authors released: the "cnn" control's features.

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
            self.convs = nn.ModuleList([nn.Conv2d(1 if k == 0 else self.channels, self.channels, 3, stride=2,
                                                  padding=1) for k in range(3)])
        self.requires_grad_(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images[:, None].to(torch.float32)
        low = x.amin(dim=(1, 2, 3), keepdim=True)
        high = x.amax(dim=(1, 2, 3), keepdim=True)
        x = (x - low) / (high - low).clamp_min(1e-6) - 0.5
        for conv in self.convs:
            x = F.relu(conv(x))
        return x


def feature_maps(images: torch.Tensor, network: nn.Module, config: SimulationConfig,
                 names=("gabor_energy", "texture", "v4_conjunctions", "lo_invariant")) -> dict:
    """The areas' feature maps for a batch ``(B, H, W)`` of stimuli: ``{name: (B, C, grid, grid)}``.

    "gabor_energy" (24 channels, a grid of min(32, H/2)), "texture" (24 first-order + 48 second-order channels,
    H/4 grid), "v4_conjunctions" (96 channels, 16 x 16) and "lo_invariant" (32 channels, 8 x 8) from
    ``network`` = :class:`VentralStream`; "released_cnn" (128 channels, H/8 grid) from ``network`` =
    :class:`ReleasedCNN`. Only ``names`` are computed.
    """
    deg_per_px = config.field_of_view_deg / config.image_size
    maps = {}
    with torch.no_grad():
        if set(names) & {"gabor_energy", "texture", "v4_conjunctions", "lo_invariant"}:
            energy = gabor_energy(images - 0.5, [wl / deg_per_px for wl in V1_WAVELENGTHS_DEG], V1_ORIENTATIONS)
            energy = F.avg_pool2d(energy.flatten(1, 2), 2)  # (B, 24, H/2, W/2)
            by_scale = energy.reshape(energy.shape[0], len(V1_WAVELENGTHS_DEG), V1_ORIENTATIONS, *energy.shape[-2:])
            maps["gabor_energy"] = F.adaptive_avg_pool2d(energy, min(V1_GRID, energy.shape[-1]))
        if "texture" in names:
            texture = texture_energy(by_scale, TEXTURE_WAVELENGTH_DEG / (2 * deg_per_px), TEXTURE_ORIENTATIONS)
            maps["texture"] = torch.cat([F.avg_pool2d(energy, 2), F.avg_pool2d(texture, 2)], dim=1)
        if "v4_conjunctions" in names or "lo_invariant" in names:
            maps["v4_conjunctions"], maps["lo_invariant"] = network(by_scale)
        if "released_cnn" in names:
            maps["released_cnn"] = network(images)
    return {name: maps[name] for name in names}


# --------------------------------------------------------------------------- measurement
def _measure(signal: dict, voxels: dict, config: SimulationConfig, noise_seed: np.random.SeedSequence, device):
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
        snr[roi] = _draw_snr(roi, len(voxels[roi]), snr_rng)
        for split in scaled:
            scaled[split][roi] = (signal[split][roi] - mean) / std * snr[roi]
    # trial noise: independent part + a part shared by neighbours (Gaussian smoothing in mm)
    positions = np.concatenate([voxels[roi].coords * np.asarray(config.voxel_size_mm) for roi in rois])
    positions = torch.as_tensor(positions, dtype=torch.float32, device=device)
    d2 = torch.cdist(positions, positions) ** 2 / config.noise_smoothing_mm ** 2
    kernel = torch.where(d2 < 25, torch.exp(-d2 / 2), torch.zeros_like(d2))  # cut at 5 sigma (no denormals)
    kernel = kernel / kernel.norm(dim=1, keepdim=True)
    lam = config.noise_correlation

    def trials(n_repeats: int, n_images: int, rng: np.random.Generator) -> np.ndarray:
        shape = (n_repeats * n_images, positions.shape[0])
        own = rng.standard_normal(shape, dtype=np.float32)
        shared = torch.as_tensor(rng.standard_normal(shape, dtype=np.float32), device=device) @ kernel.T
        noise = math.sqrt(1 - lam) * own + math.sqrt(lam) * shared.cpu().numpy()
        return np.split(noise.reshape(n_repeats, n_images, -1), np.cumsum(counts)[:-1], axis=2)

    train_noise = trials(config.train_repeats, config.n_train, train_rng)
    test_noise = trials(config.test_repeats, config.n_test, test_rng)
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
    snr[effective] = np.clip(area.median_snr * np.exp(rng.normal(0, SNR_SPREAD, effective.sum())), 0.03, 2.0)
    return snr
