"""The simulated visual cortex: determinism, shapes, held-out images, noise ceilings, pRFs, cache.

Most tests use a tiny configuration (well under a second) or the "quick" profile (one module-scoped
dataset, a few seconds); one slow test checks the default, vim-1-sized dataset.
"""

import hashlib
import importlib
from dataclasses import replace

import numpy as np
import pytest
import torch

from etecrm_lib import evaluation
from etecrm_lib.data import natural_statistics, scenes, simulate
from etecrm_lib.data.calibration import (
    CORTEX,
    MAX_TRAIN_IMAGES,
    SimulationConfig,
)
from etecrm_lib.data.cortex import gabor_energy
from etecrm_lib.data.images import (
    aperture_mask,
    apply_aperture,
    dead_leaves,
    load_photo,
    pink_noise,
    random_crops,
)
from etecrm_lib.data.voxels import prf_weights

simulate_module = importlib.import_module(
    "etecrm_lib.data.simulate"
)  # the module (``simulate`` is the function)

TINY = SimulationConfig(
    name="tiny", image_size=32, n_train=24, n_test=6, voxels={"V1": 20, "V3": 16}
)


@pytest.fixture(scope="module")
def quick():
    return simulate(subject=1, profile="quick", seed=0, cache=False)


def _same(a, b) -> bool:
    def arrays(ds):
        return [ds.train.stimuli, ds.test.stimuli] + [
            arr[roi]
            for arr in (ds.train.responses, ds.test.repeats, ds.test.oracle)
            for roi in ds.rois
        ]

    return all(np.array_equal(x, y) for x, y in zip(arrays(a), arrays(b)))


# --------------------------------------------------------------------------- determinism and shapes
def test_same_subject_and_seed_give_the_same_dataset_other_seeds_and_subjects_differ():
    first = simulate(1, TINY, seed=0, cache=False)
    assert _same(first, simulate(1, TINY, seed=0, cache=False))
    other_seed = simulate(1, TINY, seed=1, cache=False)
    assert not np.array_equal(first.train.stimuli, other_seed.train.stimuli)
    assert not np.array_equal(first.train.responses["V1"], other_seed.train.responses["V1"])
    # another subject sees the same images (as in vim-1) with other voxels
    other_subject = simulate(2, TINY, seed=0, cache=False)
    assert other_subject.subject == 2
    np.testing.assert_array_equal(first.train.stimuli, other_subject.train.stimuli)
    assert not np.array_equal(
        first.voxels["V1"].extra["prf_x"], other_subject.voxels["V1"].extra["prf_x"]
    )
    assert not np.array_equal(first.train.responses["V3"], other_subject.train.responses["V3"])


def test_quick_profile_shapes_dtypes_and_units(quick):
    assert quick.name == "sim" and quick.rois == ["V1", "V2", "V3", "V4", "LO"]
    assert quick.train.stimuli.shape == (300, 64, 64) and quick.test.stimuli.shape == (40, 64, 64)
    for split in (quick.train, quick.test):
        assert split.stimuli.dtype == np.float32
        assert split.stimuli.min() >= 0 and split.stimuli.max() <= 1
    config = SimulationConfig.for_profile("quick")
    for roi, n_vox in config.voxels.items():
        train, reps = quick.train.responses[roi], quick.test.repeats[roi]
        assert train.shape == (300, n_vox) and train.dtype == np.float32
        assert reps.shape == (13, 40, n_vox) and reps.dtype == np.float32
        assert quick.test.oracle[roi].shape == (40, n_vox)
        np.testing.assert_allclose(quick.test.responses[roi], reps.mean(0), atol=1e-5)
        # z-scored per voxel on the train split
        np.testing.assert_allclose(train.mean(0), 0, atol=1e-4)
        np.testing.assert_allclose(train.std(0), 1, atol=1e-3)
        extra = quick.voxels[roi].extra
        for key in (
            "prf_x",
            "prf_y",
            "prf_sigma",
            "prf_eccentricity",
            "prf_polar_angle",
            "snr",
            "effective",
        ):
            assert len(extra[key]) == n_vox, key
        np.testing.assert_allclose(
            np.hypot(extra["prf_x"], extra["prf_y"]), extra["prf_eccentricity"], rtol=1e-5
        )
    every_index = np.concatenate([quick.voxels[roi].volume_index for roi in quick.rois])
    assert np.unique(every_index).size == every_index.size, (
        "two voxels share one place in the volume"
    )
    assert quick.voxels["V1"].volume_shape == (64, 64, 18)


def test_every_image_sits_in_the_aperture_on_mid_gray(quick):
    for stimuli in (quick.train.stimuli, quick.test.stimuli):
        corners = stimuli[:, [0, 0, -1, -1], [0, -1, 0, -1]]
        assert np.all(corners == 0.5)
        centre = (64 - 1) / 2
        outside = np.hypot(*np.mgrid[0:64, 0:64] - centre) >= 32
        assert np.all(stimuli[:, outside] == 0.5)
        assert np.all(
            stimuli[:, 24:40, 24:40].std(axis=(1, 2)) > 0
        )  # something to see in the middle


def test_every_image_is_its_own_source_and_no_source_is_in_both_splits(quick):
    train, test = quick.info["train_sources"], quick.info["test_sources"]
    assert len(train) == 300 and len(test) == 40
    assert len(set(train)) == 300 and len(set(test)) == 40  # one distinct id per image
    assert not set(train) & set(test)
    # no test image equals (or nearly equals) a train image
    digest = lambda im: hashlib.sha256(im.tobytes()).hexdigest()  # noqa: E731
    assert not {digest(im) for im in quick.test.stimuli} & {
        digest(im) for im in quick.train.stimuli
    }
    flat = lambda x: (x - x.mean(axis=(1, 2), keepdims=True)).reshape(len(x), -1)  # noqa: E731
    a, b = flat(quick.test.stimuli), flat(quick.train.stimuli)
    corr = (a @ b.T) / np.outer(np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1))
    assert corr.max() < 0.9


# --------------------------------------------------------------------------- responses
def test_noise_ceiling_from_repeats_tracks_the_oracle_ceiling(quick):
    # 40 test images only, and vim-1-like (low) signal-to-noise ratios: the repeat-based estimate
    # scatters (median |difference| over effective voxels up to about 0.16 in an ROI), so the
    # tolerances are loose; the slow test below checks the default size (120 test images) more
    # tightly.
    estimated, exact = [], []
    for roi in quick.rois:
        estimated.append(evaluation.noise_ceiling(quick.test.repeats[roi]))
        exact.append(evaluation.oracle_ceiling(quick.test.oracle[roi], quick.test.responses[roi]))
        effective = quick.voxels[roi].extra["effective"]
        assert np.median(np.abs(estimated[-1] - exact[-1])[effective]) < 0.25, (
            roi
        )  # seed 0: up to 0.22 (V4)
    estimated, exact = np.concatenate(estimated), np.concatenate(exact)
    assert (
        np.corrcoef(estimated, exact)[0, 1] > 0.35
    )  # seed 0: 0.48 (most ceilings are low: a narrow range)
    # no large bias; the estimate is clipped at 0, which lifts the mean of the many near-zero
    # ceilings of the calibrated subject (seed 0, 40 test images: +0.086)
    assert abs(np.mean(estimated - exact)) < 0.12


def test_every_area_has_its_share_of_silent_voxels_and_reliability_falls_from_v1_to_lo(quick):
    median_ceiling, ineffective = {}, {}
    for roi in quick.rois:
        extra = quick.voxels[roi].extra
        effective = extra["effective"]
        ineffective[roi] = 1 - effective.mean()
        assert abs(ineffective[roi] - (1 - CORTEX[roi].effective_fraction)) < 0.02, roi
        assert np.all(extra["snr"][~effective] < 0.015) and np.all(extra["snr"][effective] >= 0.03)
        exact = evaluation.oracle_ceiling(quick.test.oracle[roi], quick.test.responses[roi])
        assert np.median(np.abs(exact[~effective])) < 0.15, (
            roi
        )  # no signal: r with the truth is chance
        median_ceiling[roi] = np.median(exact[effective])
    # V1 the most reliable area, every area some signal (with 40 test images and 80-120 voxels the
    # order of V2-LO scatters: seed 0 gives 0.41, 0.31, 0.21, 0.27, 0.25; the default profile's
    # order is checked by tests/test_calibration.py)
    assert median_ceiling["V1"] == max(median_ceiling.values())
    assert min(median_ceiling.values()) > 0.1


def test_n_train_changes_only_the_train_split_and_every_argument_is_in_the_cache_key():
    small, large = (
        simulate(1, TINY, seed=0, cache=False),
        simulate(1, TINY, seed=0, cache=False, n_train=40),
    )
    assert large.train.stimuli.shape[0] == 40 and large.info["n_train"] == 40
    np.testing.assert_array_equal(small.test.stimuli, large.test.stimuli)  # the same test images
    for key in ("prf_x", "prf_sigma", "snr"):
        np.testing.assert_array_equal(small.voxels["V1"].extra[key], large.voxels["V1"].extra[key])
    keys = {
        simulate_module.simulation_key(replace(TINY, n_train=n), 1, 0, truth)
        for n in (24, 40)
        for truth in simulate_module.GROUND_TRUTHS
    }
    assert len(keys) == 6
    with pytest.raises(ValueError, match="ground_truth must be one of"):
        simulate(1, TINY, ground_truth="alexnet")
    with pytest.raises(ValueError, match="train images"):
        simulate(1, TINY, n_train=MAX_TRAIN_IMAGES + 1)


def test_network_seed_follows_the_simulation_seed():
    first, again = simulate(1, TINY, seed=0, cache=False), simulate(2, TINY, seed=0, cache=False)
    other = simulate(1, TINY, seed=1, cache=False)
    assert first.info["network_seed"] == again.info["network_seed"] != other.info["network_seed"]
    assert first.info["ground_truth"] == "cortex" and set(first.info["areas"]) == set(first.rois)
    a, b = (simulate_module.VentralStream(simulate_module.network_seed(s)) for s in (0, 1))
    assert not torch.equal(a.v4_weight, b.v4_weight)
    # each V4 unit is a sparse conjunction: 3 excitatory and 2 inhibitory parts
    w = a.v4_weight.flatten(1)
    assert torch.all((w > 0).sum(1) == 3) and torch.all((w < 0).sum(1) == 2)


def test_lo_is_more_tolerant_to_position_than_v1():
    """Shift the images by 2 px (0.6 deg): LO's maps change less than V1's (max-pooling over
    positions)."""
    config = SimulationConfig.for_profile("quick")
    images = torch.as_tensor(dead_leaves(8, 64, np.random.default_rng(0)))
    shifted = torch.roll(images, 2, dims=-1)
    stream = simulate_module.VentralStream(0)
    names = ["gabor_energy", "lo_invariant"]
    before = simulate_module.feature_maps(images, stream, config, names)
    after = simulate_module.feature_maps(shifted, stream, config, names)
    similarity = {
        name: np.corrcoef(before[name].flatten().numpy(), after[name].flatten().numpy())[0, 1]
        for name in names
    }
    assert similarity["lo_invariant"] > similarity["gabor_energy"]


def test_released_cnn_has_the_published_shape_and_ignores_brightness_and_contrast():
    net = simulate_module.ReleasedCNN(seed=3)
    convs = list(net.convs)
    assert [c.out_channels for c in convs] == [128] * 3
    assert all(
        c.kernel_size == (3, 3) and c.stride == (2, 2) and c.padding == (1, 1) for c in convs
    )
    images = torch.rand(2, 64, 64)
    out = net(images)
    assert out.shape == (2, 128, 8, 8) and torch.all(out >= 0)
    # each image is min-max scaled first: an affine change of its intensities changes nothing
    torch.testing.assert_close(net(0.2 + 0.5 * images), out, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(simulate_module.ReleasedCNN(seed=3)(images), out)


def test_v1_receptive_fields_are_recovered_by_reverse_correlation(quick):
    """Correlate each reliable V1 voxel's train responses with the local contrast energy at every
    place of a 16 x 16 grid (1.25 deg cells): the best place should be the voxel's pRF centre."""
    stimuli = torch.as_tensor(quick.train.stimuli)[:, None]
    local_mean = torch.nn.functional.avg_pool2d(
        stimuli, 5, stride=1, padding=2, count_include_pad=False
    )
    energy = (
        torch.nn.functional.avg_pool2d((stimuli - local_mean) ** 2, 4).flatten(1).numpy()
    )  # (N, 256)
    energy = energy / energy.mean(1, keepdims=True)  # take out each image's overall contrast
    extra = quick.voxels["V1"].extra
    best = np.argsort(extra["snr"])[-15:]
    responses = quick.train.responses["V1"][:, best]
    z = lambda a: (a - a.mean(0)) / (a.std(0) + 1e-6)  # noqa: E731
    correlation_maps = z(responses).T @ z(energy) / len(energy)  # (15 voxels, 256 places)
    row, col = np.unravel_index(correlation_maps.argmax(1), (16, 16))
    peak_x, peak_y = (col + 0.5 - 8) * 1.25, (8 - row - 0.5) * 1.25
    error = np.hypot(peak_x - extra["prf_x"][best], peak_y - extra["prf_y"][best])
    # degrees; a random place in the 20 x 20 deg field misses by a median 8 deg. On the calibrated
    # (vim-1-like, low-SNR) quick subject, 300 train images: median 0.96 over the 15 best voxels
    # (the weaker ones' maps are dominated by noise: over the best 30 the median is 2.9)
    assert np.median(error) < 1.5
    assert correlation_maps.max(1).mean() > 0.15  # measured 0.21


def test_receptive_fields_are_retinotopic_and_grow_with_eccentricity_and_area(quick):
    for roi in quick.rois:
        vox = quick.voxels[roi]
        x, y, sigma, ecc = (
            vox.extra[k] for k in ("prf_x", "prf_y", "prf_sigma", "prf_eccentricity")
        )
        assert np.corrcoef(ecc, sigma)[0, 1] > 0.8, roi
        # the left hemisphere (low x index) sees the right visual field
        left = vox.coords[:, 0] < vox.volume_shape[0] // 2
        assert np.all(x[left] > 0) and np.all(x[~left] < 0), roi
        # neighbours in the volume have nearby pRF centres
        coords = vox.coords
        neighbours = np.abs(coords[:, None, :] - coords[None, :, :]).sum(-1) == 1
        prf_dist = np.hypot(x[:, None] - x[None], y[:, None] - y[None])
        assert prf_dist[neighbours].mean() < prf_dist.mean() / 2, roi
    sizes = {
        roi: np.median(
            quick.voxels[roi].extra["prf_sigma"] / (1 + quick.voxels[roi].extra["prf_eccentricity"])
        )
        for roi in quick.rois
    }
    assert sizes["V1"] < sizes["V2"] < sizes["V3"] < sizes["V4"] < sizes["LO"]


# --------------------------------------------------------------------------- cache
def test_second_call_loads_the_cache_and_a_corrupt_file_is_regenerated(tmp_path, monkeypatch):
    monkeypatch.setenv("ETECRM_CACHE", str(tmp_path))
    first = simulate(1, TINY, seed=3)
    files = list((tmp_path / "sim").glob("*.npz"))
    assert len(files) == 1 and "tiny" in files[0].name
    sim_module = __import__("sys").modules["etecrm_lib.data.simulate"]
    generate = sim_module.generate

    def must_not_run(*args, **kwargs):
        raise AssertionError("the cached file should have been used")

    monkeypatch.setattr(sim_module, "generate", must_not_run)
    cached = simulate(1, TINY, seed=3)
    assert _same(first, cached) and cached.info["cache_key"] == first.info["cache_key"]
    assert cached.info["test_sources"] == first.info["test_sources"]
    np.testing.assert_array_equal(
        cached.voxels["V1"].extra["effective"], first.voxels["V1"].extra["effective"]
    )

    # a truncated file is detected, reported, deleted and simulated again
    monkeypatch.setattr(sim_module, "generate", generate)
    data = files[0].read_bytes()
    files[0].write_bytes(data[: len(data) // 2])
    with pytest.warns(UserWarning, match="unusable"):
        again = simulate(1, TINY, seed=3)
    assert _same(first, again) and files[0].exists()

    # a file of another simulation under the expected name is not used either
    from etecrm_lib.data import save_npz

    save_npz(simulate(1, TINY, seed=4, cache=False), files[0])
    with pytest.warns(UserWarning, match="other parameters"):
        assert _same(first, simulate(1, TINY, seed=3))

    # cache=False neither reads nor writes
    files[0].unlink()
    simulate(1, TINY, seed=3, cache=False)
    assert not files[0].exists()


def test_bad_arguments_say_what_to_pass():
    with pytest.raises(ValueError, match="quick"):
        simulate(1, "huge")
    with pytest.raises(ValueError, match="subject must be a positive integer"):
        simulate(0, TINY)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        simulate(1, TINY, seed=-1)
    with pytest.raises(ValueError, match="multiple of 4"):
        simulate(1, SimulationConfig(image_size=30))
    with pytest.raises(ValueError, match="ROIs among"):
        simulate(1, SimulationConfig(voxels={"MT": 10}))


# --------------------------------------------------------------------------- building blocks
def test_gabor_energy_of_a_grating_is_its_amplitude_in_the_matching_channel():
    size, wavelength, amplitude = 64, 8.0, 0.3
    x = torch.arange(size, dtype=torch.float32)
    grating = amplitude * torch.cos(2 * torch.pi * x / wavelength + 0.7)[None, :].expand(size, size)
    energy = gabor_energy(grating[None], [wavelength, 2 * wavelength], n_orientations=4)
    assert energy.shape == (1, 2, 4, size, size)
    # frequency along x = orientation 0: flat energy (phase-invariant), equal to the amplitude
    np.testing.assert_allclose(energy[0, 0, 0].numpy(), amplitude, rtol=1e-3)
    assert energy[0, 0, 2].max() < 1e-3 * amplitude  # orthogonal orientation
    assert energy[0, 1, 0].max() < 0.05 * amplitude  # an octave away in frequency


def test_the_fast_feature_paths_equal_straightforward_references():
    """The CPU-fast forms of the simulation compute the same numbers as the plain formulas."""
    import torch.nn.functional as F

    from etecrm_lib.data import cortex

    gen = torch.Generator().manual_seed(0)
    images = torch.rand(5, 32, 32, generator=gen) - 0.5
    # gabor_energy in chunks of images, 2 x 2 average fused in == one image at a time, then pooled
    one_by_one = torch.cat([gabor_energy(image[None], [4.0, 8.0], 4) for image in images])
    pooled = F.avg_pool2d(one_by_one.flatten(1, 2), 2).reshape(5, 2, 4, 16, 16)
    torch.testing.assert_close(gabor_energy(images, [4.0, 8.0], 4, halve=True), pooled)
    flat = one_by_one.flatten(1, 2)
    torch.testing.assert_close(cortex.average_2x2(flat), F.avg_pool2d(flat, 2))
    # max pooling in channels-last order == F.max_pool2d
    x = torch.randn(3, 6, 16, 16, generator=gen)
    assert torch.equal(cortex.max_pool(x), F.max_pool2d(x, 3, stride=2, padding=1))
    # component drive: shared (K, C) profiles mixed before pooling == the per-voxel formula
    maps, scales = torch.rand(4, 7, 8, 8, generator=gen), torch.rand(7, generator=gen) + 0.5
    prf, shared = torch.rand(9, 64, generator=gen), torch.rand(3, 7, generator=gen)
    reference = torch.einsum(
        "vkc,bcx,vx->bvk", shared.expand(9, 3, 7) / scales, maps.flatten(2), prf
    )
    drive = simulate_module.component_drive
    torch.testing.assert_close(drive(maps, scales, prf, shared), reference)
    torch.testing.assert_close(drive(maps, scales, prf, shared.expand(9, 3, 7)), reference)


def test_many_trials_are_averaged_a_few_at_a_time_with_the_same_draws(monkeypatch):
    from etecrm_lib.data import measurement

    kernel = torch.rand(30, 30, generator=torch.Generator().manual_seed(0))
    kernel = kernel / kernel.norm(dim=1, keepdim=True)
    at_once = measurement.mean_trial_noise(50, 40, np.random.default_rng(3), kernel, 0.3)
    monkeypatch.setattr(measurement, "TRIAL_CHUNK", 7 * 40 * 30)  # 7 trials at a time
    in_chunks = measurement.mean_trial_noise(50, 40, np.random.default_rng(3), kernel, 0.3)
    np.testing.assert_allclose(in_chunks, at_once, atol=1e-6)
    assert in_chunks.dtype == np.float32 and in_chunks.shape == (40, 30)
    assert 0.8 / 50 < in_chunks.var() < 1.2 / 50  # the mean of 50 unit-variance trials


def test_prf_weights_are_normalised_gaussians_at_the_right_place():
    w = prf_weights([5.0, -2.5], [2.5, 0.0], [1.0, 2.0], grid=32, field_of_view_deg=20.0)
    assert w.shape == (2, 32 * 32)
    np.testing.assert_allclose(w.sum(1).numpy(), 1.0, rtol=1e-5)
    # x right, y up: cell (row, col) centre = ((col + 0.5 - 16) * 0.625, (16 - row - 0.5) * 0.625)
    row, col = np.unravel_index(int(w[0].argmax()), (32, 32))
    assert (
        abs((col + 0.5 - 16) * 0.625 - 5.0) <= 0.32 and abs((16 - row - 0.5) * 0.625 - 2.5) <= 0.32
    )


def test_dead_leaves_have_natural_image_statistics():
    rng = np.random.default_rng(0)
    images = dead_leaves(8, 64, rng)
    assert images.shape == (8, 64, 64) and images.dtype == np.float32
    assert images.min() >= 0 and images.max() <= 1 and images.std() > 0.1
    # amplitude spectrum falls roughly as 1/f (slope about -1 on log-log axes; white noise: 0)
    spectrum = np.abs(np.fft.fft2(images - images.mean(axis=(1, 2), keepdims=True))).mean(0)
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(64), np.fft.fftfreq(64), indexing="ij"))
    band = (f > 2 / 64) & (f < 0.25)
    slope = np.polyfit(np.log(f[band]), np.log(spectrum[band]), 1)[0]
    assert -2.0 < slope < -0.8
    noise = pink_noise(3, 32, rng)
    np.testing.assert_allclose(noise.std(axis=(1, 2)), 1, rtol=1e-5)


def test_photos_crops_and_aperture():
    assert load_photo("no_such_picture") is None
    camera = load_photo("camera")
    assert camera is not None and camera.ndim == 2 and 0 <= camera.min() and camera.max() <= 1
    crops, records = random_crops({"camera": camera}, 3, 32, np.random.default_rng(0))
    again, _ = random_crops({"camera": camera}, 3, 32, np.random.default_rng(0))
    np.testing.assert_array_equal(crops, again)
    name, top, left, side, flipped = records[0]
    assert name == "camera" and side >= 0.3 * 512 and top + side <= 512 and left + side <= 512
    mask = aperture_mask(32)
    assert mask[16, 16] == 1 and mask[0, 0] == 0 and mask[0, 16] < 0.5
    shown = apply_aperture(crops)
    assert np.all(shown[:, 0, 0] == 0.5)
    np.testing.assert_array_equal(shown * 256, np.round(shown * 256))  # 8-bit-like steps


@pytest.fixture(scope="module")
def default_subject():
    return simulate(subject=1, profile="full", seed=0)


@pytest.mark.slow
def test_default_dataset_is_vim1_shaped_with_honest_noise_ceilings(default_subject):
    """The default size. Tolerances: the repeat-based ceiling estimate scatters by about 0.1 at the
    calibrated, vim-1-like signal-to-noise ratios."""
    ds = default_subject
    assert ds.train.stimuli.shape == (1750, 128, 128) and ds.test.stimuli.shape == (120, 128, 128)
    medians = {}
    for roi, n_vox in SimulationConfig.for_profile("full").voxels.items():
        assert ds.test.repeats[roi].shape == (13, 120, n_vox)
        estimated = evaluation.noise_ceiling(ds.test.repeats[roi])
        exact = evaluation.oracle_ceiling(ds.test.oracle[roi], ds.test.responses[roi])
        effective = ds.voxels[roi].extra["effective"]
        # the calibrated (vim-1-like) SNRs are low: 13 repeats estimate a ceiling to about +-0.1
        # (seed 0, median |estimate - oracle|: all voxels 0.10-0.14, effective 0.08-0.15 by ROI)
        assert np.median(np.abs(estimated - exact)) < 0.17, roi
        assert np.median(np.abs(estimated - exact)[effective]) < 0.17, roi
        assert np.quantile(estimated, 0.1) < 0.1, roi
        medians[roi] = np.median(exact)
    assert medians["V1"] > medians["V2"] > medians["LO"]
    assert set(CORTEX) == set(ds.rois)


@pytest.mark.slow
def test_true_noise_ceiling_is_what_the_repeats_estimate_on_average(default_subject):
    """Cross-check of :func:`simulate.true_noise_ceiling` against :func:`evaluation.noise_ceiling`:
    the repeat-based estimate of the signal variance is unbiased before it is clipped at 0, so over
    an ROI's voxels its mean matches the true one. Units: signal variance / noise variance of the
    mean of 13 repeats; one voxel's estimate scatters by about 0.13 (120 images), the ROI mean by a
    few hundredths (the noise is shared between neighbours); the band is 0.05."""
    ds = default_subject
    for roi in ds.rois:
        true_c = simulate_module.true_noise_ceiling(ds, roi)
        true_snr = true_c**2 / (1 - true_c**2)  # signal variance / noise variance of the mean
        repeats = np.asarray(ds.test.repeats[roi], dtype=np.float64)
        noise_of_mean = repeats.var(axis=0, ddof=1).mean(axis=0) / repeats.shape[0]
        estimated_snr = (repeats.mean(axis=0).var(axis=0, ddof=1) - noise_of_mean) / noise_of_mean
        assert abs(np.mean(estimated_snr) - np.mean(true_snr)) < 0.05, (
            roi,
            np.mean(estimated_snr),
            np.mean(true_snr),
        )


@pytest.mark.slow
def test_best_v1_voxels_of_the_gabor_model_are_strong_but_below_the_oracle(default_subject):
    """The calibration anchors vim-1's best voxels (r about 0.8) on the *oracle*
    (tests/test_calibration.py), not on any model. The Gabor model, whose features are close to
    V1's but not V1's, must still predict its best V1 voxels well (best voxel above 0.6) and no
    better than the anchor allows (below 0.9). Measured on the default subject: 0.82 on generator
    3 (then calibrated on this model), 0.69 on generator 4 (real Gabor models reach 0.82 on vim-1:
    the simulated V1 is somewhat harder for a Gabor model than vim-1's)."""
    from etecrm_lib.ablations import run_variants

    (result,) = run_variants(
        default_subject, ["gwp_ridge"], rois=["V1"], profile="full", progress=False
    )
    r = np.asarray(result.test_r)
    assert 0.60 < r.max() < 0.90, r.max()


def test_dead_leaves_painting_matches_a_plain_loop_over_discs():
    """The vectorised painter against the obvious loop: later discs cover earlier ones."""
    from etecrm_lib.data.images import top_disc

    rng = np.random.default_rng(5)
    size, margin, n_leaves = 24, 6, 30
    radii = rng.uniform(0.5, 6, 2 * n_leaves)
    centres = rng.uniform(-margin, size + margin, (2 * n_leaves, 2))
    top = top_disc(radii, centres, 2, n_leaves, size, margin)
    expected = np.full((2, size, size), -1)
    yy, xx = np.mgrid[0:size, 0:size]
    for k, ((cy, cx), r) in enumerate(zip(centres, radii)):
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        expected[k // n_leaves][inside] = k
    np.testing.assert_array_equal(top, expected)


# --------------------------------------------------------------------------- scenes and voxels
def test_scenes_paint_later_objects_over_earlier_ones():
    """Two squares, the second drawn over the first: at the overlap the second one's gray shows."""
    params = scenes.scene_parameters(np.random.default_rng(0), 32)
    n = len(params["on"])
    flat = {key: np.zeros(n) for key in params}
    flat.update(on=np.arange(n) < 2, radius=np.full(n, 6.0), sides=np.full(n, 4.0))
    flat.update(
        stretch=np.ones(n), spin=np.full(n, np.pi / 4), gray=np.array([0.2, 0.8] + [0] * (n - 2))
    )
    flat.update(
        cy=np.full(n, 16.0), cx=np.array([12.0, 18.0] + [0] * (n - 2)), background=np.full(n, 0.5)
    )
    value, covered = (t.numpy()[0] for t in scenes.render_scenes([flat], 32))
    assert covered[16, 12] and covered[16, 18] and not covered[2, 2]
    assert value[16, 10] == pytest.approx(0.2) and value[16, 16] == pytest.approx(0.8)
    # an axis-aligned square of half-side 6 cos(45 deg) = 4.24 px: corners are inside, beyond is not
    assert covered[16 + 4, 18 + 4] and not covered[16 + 5, 18 + 5]


def test_stimuli_have_the_statistics_of_real_photographs():
    """Each statistic's median over 150 scenes lies within the 10th-90th percentile of photograph
    crops prepared the same way (module :mod:`natural_statistics`)."""
    images, ids = scenes.make_scenes(150, 128, np.random.SeedSequence(5), "train")
    assert len(set(ids)) == 150
    table = natural_statistics.compare_to_photographs(images, n_photos=150)
    for name, row in table.items():
        low, _, high = row["photographs"]
        assert low <= row["stimuli"][1] <= high, (name, row)
    assert -1.6 < table["spectrum_slope"]["stimuli"][1] < -1.0  # about 1/f (Field 1987)


def test_neighbouring_voxels_share_their_tuning(quick):
    """Voxel tuning varies slowly along the cortex: in V4 and LO the noise-free responses of voxels
    within 4 mm correlate more than those of voxels more than 8 mm apart (same hemisphere; quick
    seed 0: 0.83 against 0.55 in V4, 0.93 against 0.67 in LO)."""
    for roi in ("V4", "LO"):
        info = quick.voxels[roi]
        signal = np.asarray(quick.test.oracle[roi], dtype=np.float64)
        r = np.corrcoef(signal.T)
        mm = info.coords * np.asarray(SimulationConfig().voxel_size_mm)
        distance = np.linalg.norm(mm[:, None] - mm[None], axis=-1)
        same_side = np.sign(info.extra["prf_x"])[:, None] == np.sign(info.extra["prf_x"])[None]
        near = r[(distance > 0) & (distance < 4) & same_side].mean()
        far = r[(distance > 8) & same_side].mean()
        assert near > far + 0.1, (roi, near, far)
