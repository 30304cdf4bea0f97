"""The embedded simulated visual cortex: a vim-1-shaped dataset whose ground truth is known.

``simulate(subject=1)`` shows a few thousand natural images (see :mod:`.images`) to five simulated
visual areas and returns an :class:`EncodingDataset` shaped like vim-1 (Kay et al. 2008): 1750
train images shown twice (responses = mean of the 2 trials) and 120 test images shown 13 times
(``ds.test.repeats``), 128x128 px covering 20 x 20 degrees. Because it is a simulation, the
noise-free test responses are known too (``ds.test.oracle``), so noise ceilings are exact.


It is four modules: this one (the entry point :func:`simulate`, caching, the whole run
:func:`generate`), :mod:`.cortex` (what each area computes: the
ground truth), :mod:`.voxels` (where the voxels sit, their pRFs and read-outs) and
:mod:`.calibration` (sizes of the experiment, and the noise of the measurement, calibrated per area
to vim-1).

Subjects see the same images (as in vim-1); their voxels (pRFs, mixtures, SNR, noise) differ.
Results are cached on disk (see :func:`simulate`).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
import tqdm.auto

from ..device import get_device
from ..features.gabor import GaborConfig, gabor_features, gabor_layout
from ..storage import cache_dir
from .cortex import CONJUNCTION_THRESHOLD, ReleasedCNN, VentralStream, feature_maps
from .dataset import EncodingDataset, Split
from .measurement import CORTEX, SNR_SPREAD, SimulationConfig, measure
from .npz import load_npz, save_npz
from .scenes import MAX_OBJECTS, MIN_OBJECTS, make_scenes
from .voxels import (
    INPUT_COMPONENTS,
    INPUT_FIRST_ORDER_SHARE,
    TUNING_COMPONENTS,
    TUNING_JITTER,
    TUNING_LENGTH_MM,
    TUNING_SPREAD,
    area_tuning,
    cnn_control_readout,
    layout_voxels,
)

GENERATOR_VERSION = 5  # bump when the simulation changes: old cache files are then ignored
GROUND_TRUTHS = ("cortex", "gabor", "cnn")  # the simulated cortex and the two control cortices
COMPRESSION = 0.5  # signal = drive ** COMPRESSION ("cortex" only; the controls are linear)
GABOR_CONTROL_FEATURES = 12  # Gabor pyramid features per voxel in the "gabor" control


# --------------------------------------------------------------------------- the entry point
def simulate(
    subject: int = 1,
    profile: str | SimulationConfig = "full",
    seed: int = 0,
    cache: bool = True,
    progress: bool | None = None,
    ground_truth: str = "cortex",
    n_train: int | None = None,
) -> EncodingDataset:
    """The simulated vim-1-like dataset of one subject (see the module docstring).

    Parameters
    ----------
    subject : int >= 1. Subjects see the same images; their voxels differ.
    profile : "full" (alias "default": 1750/120 images of 128 px, 3000 voxels, about 30 s of CPU
        time, seconds on a GPU) or "quick" (300/40 images of 64 px, 500 voxels, a few seconds), or a
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
    config = (
        profile if isinstance(profile, SimulationConfig) else SimulationConfig.for_profile(profile)
    )
    if n_train is not None:
        if isinstance(n_train, bool) or not isinstance(n_train, (int, np.integer)):
            raise ValueError(f"n_train must be an integer number of train images, got {n_train!r}")
        config = replace(config, n_train=int(n_train))
    config.check()
    if ground_truth not in GROUND_TRUTHS:
        raise ValueError(
            f'ground_truth must be one of {GROUND_TRUTHS} ("cortex" is the simulated visual '
            f"hierarchy, the others are control cortices), got {ground_truth!r}"
        )
    if isinstance(subject, bool) or not isinstance(subject, (int, np.integer)) or subject < 1:
        raise ValueError(f"subject must be a positive integer, got {subject!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    subject, seed = int(subject), int(seed)
    key = simulation_key(config, subject, seed, ground_truth)
    path = None
    if cache:
        path = cache_dir("sim") / (
            f"sim_{config.name}_{ground_truth}_n{config.n_train}_subject{subject}_seed{seed}_"
            f"{key[:16]}.npz"
        )
        dataset = _load_verified(path, key, config)
        if dataset is not None:
            return dataset
    dataset = generate(
        config,
        subject,
        seed,
        progress=config.name == "full" if progress is None else progress,
        ground_truth=ground_truth,
    )
    if path is not None:
        save_npz(dataset, path)
    return dataset


def network_seed(seed: int) -> int:
    """The seed of the random V4/LO weights (and of the control network) of simulation ``seed``."""
    return int(np.random.SeedSequence([20190728, int(seed)]).generate_state(1)[0])


def simulation_key(
    config: SimulationConfig, subject: int, seed: int, ground_truth: str = "cortex"
) -> str:
    """SHA-256 of everything the simulation depends on (the cache file's identity)."""
    params = {
        "version": GENERATOR_VERSION,
        "subject": subject,
        "seed": seed,
        "config": asdict(config),
        "ground_truth": ground_truth,
        "cortex": {roi: asdict(area) for roi, area in CORTEX.items()},
        "network_seed": network_seed(seed),
        "snr_spread": SNR_SPREAD,
        "compression": COMPRESSION,
        "scenes": {"objects": [MIN_OBJECTS, MAX_OBJECTS]},
        "tuning": [TUNING_COMPONENTS, TUNING_LENGTH_MM, TUNING_SPREAD, TUNING_JITTER],
        "input": [INPUT_COMPONENTS, INPUT_FIRST_ORDER_SHARE],
        "conjunction_threshold": CONJUNCTION_THRESHOLD,
    }
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
    warnings.warn(
        f"cached simulation {path} is unusable: {problem}; deleting it and simulating again",
        stacklevel=3,
    )
    path.unlink(missing_ok=True)
    return None


def _mismatch(ds: EncodingDataset, key: str, config: SimulationConfig) -> str | None:
    """What is wrong with a loaded cache file, or None if it is what ``key`` describes."""
    if ds.info.get("cache_key") != key:
        return "it was made with other parameters"
    size = (config.image_size, config.image_size)
    if ds.train.stimuli.shape != (config.n_train, *size) or ds.test.stimuli.shape != (
        config.n_test,
        *size,
    ):
        return f"its images have shapes {ds.train.stimuli.shape} and {ds.test.stimuli.shape}"
    if ds.rois != list(config.voxels):
        return f"its ROIs are {ds.rois}"
    for roi, n in config.voxels.items():
        want = (config.test_repeats, config.n_test, n)
        if (
            ds.n_voxels(roi) != n
            or roi not in ds.test.oracle
            or ds.test.repeats.get(roi, np.empty(0)).shape != want
        ):
            return f"ROI {roi} has the wrong number of voxels, repeats or no oracle"
    return None


# --------------------------------------------------------------------------- the whole simulation
def generate(
    config: SimulationConfig,
    subject: int = 1,
    seed: int = 0,
    progress: bool = False,
    ground_truth: str = "cortex",
) -> EncodingDataset:
    """Run the simulation without any cache (see :func:`simulate`)."""
    return generate_with_basis(config, subject, seed, progress, ground_truth, keep_basis=False)[0]


def generate_with_basis(
    config: SimulationConfig,
    subject: int = 1,
    seed: int = 0,
    progress: bool = False,
    ground_truth: str = "cortex",
    keep_basis: bool = True,
) -> tuple[EncodingDataset, dict | None]:
    """The simulation (see :func:`simulate`) and each voxel's true features (its *basis*).

    The basis is ``{split: {roi: float32 (N, V, K)}}``: per image and voxel, the K features of the
    ground truth that the voxel reads out (what an oracle model would be given; see
    :func:`etecrm_lib.data.calibration.oracle_report`), or None when ``keep_basis`` is False.
    """
    start = time.perf_counter()
    device = get_device()
    # Images depend on the seed only (subjects see the same images); voxels on subject and seed.
    # Train and test images, and train and test noise, come from separate streams: the test split
    # does not change with n_train.
    image_seeds = np.random.SeedSequence([20190726, seed]).spawn(2)
    voxel_seed, noise_seed = np.random.SeedSequence([20190727, seed, subject]).spawn(2)
    voxel_rng = np.random.default_rng(voxel_seed)
    n_batches = math.ceil(config.n_train / config.batch_size) + math.ceil(
        config.n_test / config.batch_size
    )
    bar = tqdm.auto.tqdm(total=3 + n_batches, desc="simulating: images", disable=not progress)

    stimuli, sources = {}, {}
    for split, n, seq in (
        ("train", config.n_train, image_seeds[0]),
        ("test", config.n_test, image_seeds[1]),
    ):
        stimuli[split], sources[split] = make_scenes(n, config.image_size, seq, split, device)
        bar.update()

    voxels = layout_voxels(config, voxel_rng)
    bar.set_description("simulating: responses")
    if ground_truth == "gabor":
        signal, basis = _gabor_control_signal(stimuli, voxels, config, voxel_rng, device)
        bar.update(n_batches)
    else:
        signal, basis = _network_signal(
            stimuli, voxels, config, voxel_rng, device, ground_truth, network_seed(seed), bar
        )

    bar.set_description("simulating: measurement noise")
    train, test_repeats, test_oracle = measure(signal, voxels, config, noise_seed, device)
    bar.update()
    bar.close()

    info = {
        "source": "simulated visual cortex (etecrm_lib.data.simulate)",
        "generator_version": GENERATOR_VERSION,
        "profile": config.name,
        "seed": seed,
        "ground_truth": ground_truth,
        "network_seed": network_seed(seed),
        "n_train": config.n_train,
        "cache_key": simulation_key(config, subject, seed, ground_truth),
        "field_of_view_deg": config.field_of_view_deg,
        "train_repeats": config.train_repeats,
        "train_sources": sources["train"],
        "test_sources": sources["test"],
        "areas": {roi: _describe_area(roi, ground_truth) for roi in config.voxels},
        "noise": (
            f"Gaussian per trial, unit variance, a share of {config.noise_correlation} "
            "smoothed over "
            f"{config.noise_smoothing_mm} mm between neighbouring voxels"
        ),
        "response_units": "z-scored per voxel with the train mean and std (same transform on "
        "test and oracle)",
        "generation_seconds": round(time.perf_counter() - start, 1),
    }
    test_means = {roi: reps.mean(axis=0) for roi, reps in test_repeats.items()}
    dataset = EncodingDataset(
        "sim",
        subject,
        Split(stimuli["train"], train),
        Split(stimuli["test"], test_means, test_repeats, test_oracle),
        voxels,
        info,
    )
    return dataset, (basis if keep_basis else None)


def _network_signal(
    stimuli: dict,
    voxels: dict,
    config: SimulationConfig,
    rng: np.random.Generator,
    device,
    ground_truth: str,
    net_seed: int,
    bar,
) -> tuple[dict, dict]:
    """Noise-free signals ``{split: {roi: float64 (N, V)}}`` of the cortex or of the "cnn" control,
    and each voxel's basis ``{split: {roi: float32 (N, V, K)}}`` (see :func:`generate_with_basis`).

    Cortex: the basis is the compressed pRF-pooled drive of each of the voxel's K tuning components
    (:func:`.voxels.area_tuning`; in V4 and LO its own area's and its input's); the signal is
    their mix by the voxel's coefficients, each component z-scored over the train images. "cnn"
    control: one component per voxel, its own channel weights
    (:func:`.voxels.cnn_control_readout`), no compression.
    """
    if ground_truth == "cnn":
        network = ReleasedCNN(net_seed).to(device).eval()
        tuning = {}
        for roi in config.voxels:
            features, prf, weights = cnn_control_readout(voxels[roi].extra, config, rng, device)
            ones = torch.ones(len(weights), 1, device=device)
            tuning[roi] = ([(features, prf, weights[:, None, :])], ones)
    else:
        network = VentralStream(net_seed).to(device).eval()
        tuning = {
            roi: area_tuning(roi, voxels[roi], config, rng, net_seed, device)
            for roi in config.voxels
        }
    power = COMPRESSION if ground_truth == "cortex" else 1.0
    needed = sorted({name for parts, _ in tuning.values() for name, *_ in parts})
    # each channel divided by its mean over the first 64 train images: channels of any scale weigh
    # alike. The floor (a tenth of the median channel's mean) keeps a channel that is silent on
    # those images (a dead ReLU of the random "cnn" network) from being amplified a billion-fold by
    # the rare image that drives it.
    calibration = torch.as_tensor(stimuli["train"][:64], device=device)
    scales = {}
    for name, maps in feature_maps(calibration, network, config, needed).items():
        means = maps.mean(dim=(0, 2, 3))
        scales[name] = means.clamp_min(0.1 * float(means.median()) + 1e-12)
    parts = {split: {roi: [] for roi in config.voxels} for split in stimuli}
    for split in ("train", "test"):
        for batch in torch.as_tensor(stimuli[split]).split(config.batch_size):
            maps = feature_maps(batch.to(device), network, config, needed)
            for roi, (readout, _) in tuning.items():
                drive = torch.cat(
                    [component_drive(maps[name], scales[name], prf, c) for name, prf, c in readout],
                    dim=-1,
                )
                parts[split][roi].append(drive.clamp_min(0).pow(power).cpu().numpy())
            bar.update()
    basis = {
        split: {roi: np.concatenate(p) for roi, p in by_roi.items()}
        for split, by_roi in parts.items()
    }
    signal = {split: {} for split in basis}
    for roi, (_, coefficients) in tuning.items():
        train = basis["train"][roi].astype(np.float64)
        mean, std = train.mean(0), train.std(0) + 1e-12
        weights = coefficients.cpu().double().numpy()
        for split in basis:
            signal[split][roi] = np.einsum("nvk,vk->nv", (basis[split][roi] - mean) / std, weights)
    return signal, basis


def component_drive(
    maps: torch.Tensor, scales: torch.Tensor, prf: torch.Tensor, components: torch.Tensor
) -> torch.Tensor:
    """The drive of each voxel's tuning components: ``(B, V, K)``.

    ``maps (B, C, G, G)`` (an area's features), ``scales (C,)`` (each channel is divided by its
    scale), ``prf (V, G*G)`` (each voxel's pRF weights), ``components (V, K, C)`` (each voxel's own
    channel profiles) or ``(K, C)`` (profiles shared by every voxel of the area)::

        drive[b, v, k] = sum_c components[v, k, c] / scales[c] * sum_xy prf[v, xy] * maps[b, c, xy]

    Shared profiles mix the channels before the pRF pooling: K maps to pool instead of C (the same
    sum in another order, many times faster).
    """
    flat = maps.flatten(2)  # (B, C, G*G)
    if components.ndim == 2:
        return ((components / scales) @ flat @ prf.T).transpose(1, 2)
    pooled = flat @ prf.T / scales[:, None]  # (B, C, V)
    # each voxel's components: a broadcast product (einsum is slow on CPUs)
    return (pooled.transpose(1, 2)[:, :, None, :] * components[None]).sum(-1)


def _gabor_control_signal(
    stimuli: dict, voxels: dict, config: SimulationConfig, rng: np.random.Generator, device
) -> dict:
    """The "gabor" control: each voxel a sparse non-negative sum of Gabor pyramid features near its
    pRF.

    Voxel v picks :data:`GABOR_CONTROL_FEATURES` features of ``gabor_features`` (default
    :class:`GaborConfig`, log nonlinearity) without replacement, with probabilities proportional to
    the overlap of each filter's Gaussian envelope with the voxel's pRF, and weighs them with
    exponential random weights. Returns ``{split: {roi: float64 (N, V)}}`` and the basis (each
    voxel's picked features) ``{split: {roi: float32 (N, V, 12)}}``.
    """
    gabor = GaborConfig()
    layout = gabor_layout(config.image_size, gabor)
    deg = config.field_of_view_deg / config.image_size
    centre = (config.image_size - 1) / 2
    fx, fy, fs = (layout["x"] - centre) * deg, -(layout["y"] - centre) * deg, layout["sigma"] * deg
    readout, picked = {}, {}
    for roi in config.voxels:
        extra = voxels[roi].extra
        weights = np.zeros((fx.size, len(extra["prf_x"])), dtype=np.float32)
        for v, (x, y, sigma) in enumerate(zip(extra["prf_x"], extra["prf_y"], extra["prf_sigma"])):
            spread = sigma**2 + fs**2
            overlap = np.exp(-((fx - x) ** 2 + (fy - y) ** 2) / (2 * spread)) / spread
            picks = rng.choice(
                fx.size, GABOR_CONTROL_FEATURES, replace=False, p=overlap / overlap.sum()
            )
            weights[picks, v] = rng.exponential(1.0, GABOR_CONTROL_FEATURES)
        readout[roi] = torch.as_tensor(weights)
        picked[roi] = np.sort(np.argsort(-weights, axis=0)[:GABOR_CONTROL_FEATURES].T, axis=1)
    signal, basis = {}, {}
    for split, images in stimuli.items():
        features = torch.as_tensor(
            gabor_features(images, gabor, device=device, cache=False, progress=False)
        )
        signal[split] = {
            roi: (features @ weights).double().numpy() for roi, weights in readout.items()
        }
        basis[split] = {roi: features.numpy()[:, idx] for roi, idx in picked.items()}
    return signal, basis


def _describe_area(roi: str, ground_truth: str = "cortex") -> str:
    area = CORTEX[roi]
    a, b = area.prf_sigma
    prf = f"pRF sigma = {a} + {b} x eccentricity (deg)"
    if ground_truth == "gabor":
        return (
            f"control: sparse non-negative linear read-out of {GABOR_CONTROL_FEATURES} "
            "Gabor wavelet pyramid "
            f"features near the pRF; {prf}"
        )
    if ground_truth == "cnn":
        return (
            "control: non-negative read-out of a random network with the released ETECRM "
            f"architecture; {prf}"
        )
    what = {
        "gabor_energy": "complex-cell Gabor energy (3 spatial frequencies x 8 orientations)",
        "texture": f"second-order texture energy, {area.first_order_share:.0%} first-order Gabor "
        "energy",
        "v4_conjunctions": "rectified conjunctions of V1 orientation energy, max-pooled over "
        "positions (per scale)",
        "lo_invariant": "conjunctions of V4 outputs after a maximum over scales, max-pooled over "
        "positions",
    }[area.features]
    if area.input_share:
        what += f", and its input: texture energy ({area.input_share:.0%} of the read-out weight)"
    return f"{what}; {prf}; compressive power {COMPRESSION}"


def true_noise_ceiling(dataset: EncodingDataset, roi: str) -> np.ndarray:
    """The noise ceiling of the mean of the test repeats, from the known noise-free signal:
    ``(V,)``.

    ``sqrt(s / (s + n / R))``: ``s`` is the variance of the noise-free test signal
    (``dataset.test.oracle``) over the test images, ``n`` the single-trial noise variance (the
    variance over the R repeats, averaged over images: 1,500 trials give it to about 4 %).
    """
    repeats = np.asarray(dataset.test.repeats[roi], dtype=np.float64)
    signal_var = np.asarray(dataset.test.oracle[roi], dtype=np.float64).var(axis=0, ddof=1)
    noise_var = repeats.var(axis=0, ddof=1).mean(axis=0)
    return np.sqrt(signal_var / (signal_var + noise_var / repeats.shape[0]))
