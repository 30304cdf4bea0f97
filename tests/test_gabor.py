"""Gabor wavelet pyramid: layout, known answers, the pymoten cross-check, caching."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from etecrm_lib.features import gabor
from etecrm_lib.features.gabor import GaborConfig, gabor_energy, gabor_features, gabor_layout


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ETECRM_CACHE", str(tmp_path / "cache"))


def _images(n=12, size=32, seed=0):
    rng = np.random.default_rng(seed)
    smooth = gaussian_filter(rng.random((n, size, size)), (0, 1.5, 1.5))
    return np.clip((smooth - smooth.mean()) * 6 + 0.5, 0, 1).astype(np.float32)


def _grating(size, wavelength, degrees):
    yy, xx = np.mgrid[:size, :size].astype(float)
    t = np.deg2rad(degrees)
    return (0.5 + 0.4 * np.cos(2 * np.pi / wavelength * (xx * np.cos(t) - yy * np.sin(t)))).astype(
        np.float32
    )


def test_kay_layout_has_10920_features_at_128_px():
    layout = gabor_layout(128)
    assert len(layout["x"]) == 10920
    assert sorted(set(layout["wavelength"].tolist())) == [4, 8, 16, 32, 64, 128]
    # the grid spacing equals the wavelength, centred in the field
    w8 = layout["wavelength"] == 8
    assert sorted(set(layout["x"][w8].tolist())) == [(i + 0.5) * 8 - 0.5 for i in range(16)]
    assert len(gabor_layout(64)["x"]) == 8 * (1 + 4 + 16 + 64 + 256)


def test_shapes_determinism_and_nonlinearity():
    images = _images()
    a = gabor_features(images, cache=False, device="cpu", progress=False)
    b = gabor_features(images, cache=False, device="cpu", progress=False)
    assert a.shape == (12, 8 * (1 + 4 + 16 + 64)) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    raw = gabor_features(
        images, GaborConfig(nonlinearity="none"), cache=False, device="cpu", progress=False
    )
    np.testing.assert_allclose(a, np.log1p(raw), rtol=1e-5, atol=1e-6)
    # batches do not interact
    small_batches = gabor_features(
        images, GaborConfig(batch_size=5), cache=False, device="cpu", progress=False
    )
    np.testing.assert_allclose(a, small_batches, rtol=1e-5, atol=1e-6)


def test_gray_gives_zero_and_a_grating_drives_its_own_filter():
    cfg = GaborConfig(nonlinearity="none")
    gray = np.full((1, 64, 64), 0.5, np.float32)
    assert np.abs(gabor_energy(gray, cfg, "cpu").numpy()).max() < 1e-6
    layout = gabor_layout(64, cfg)
    energy = gabor_energy(_grating(64, 8, 45.0)[None], cfg, "cpu").numpy()[0]
    best = int(np.argmax(energy))
    assert layout["wavelength"][best] == 8 and layout["orientation"][best] == 45.0
    centre = (
        (layout["wavelength"] == 8)
        & (np.abs(layout["x"] - 31.5) < 5)
        & (np.abs(layout["y"] - 31.5) < 5)
    )
    tuning = [energy[centre & (layout["orientation"] == o)].mean() for o in np.arange(8) * 22.5]
    assert (
        np.argmax(tuning) == 2 and tuning[2] > 5 * tuning[6]
    )  # 45 deg preferred, 135 deg (orthogonal) weak


def test_energies_match_pymoten_filters():
    """Same filter definition in pymoten's units: per-feature correlation over images > 0.99."""
    from moten.core import mk_3d_gabor

    size = 64
    images = _images(n=20, size=size, seed=1)
    layout = gabor_layout(size)
    ours = gabor_energy(images, GaborConfig(), "cpu").numpy()
    rng = np.random.default_rng(0)
    picks = list(rng.choice(ours.shape[1], 12, replace=False)) + [0, ours.shape[1] - 1]
    for i in picks:
        sin, cos, _, _ = mk_3d_gabor(
            (size, size),
            stimulus_fps=1,
            filter_temporal_width=1,
            aspect_ratio=1.0,
            temporal_freq=0,
            centerh=layout["x"][i] / (size - 1),
            centerv=layout["y"][i] / (size - 1),
            direction=float(layout["orientation"][i]),
            spatial_freq=(size - 1) / layout["wavelength"][i],
            spatial_env=layout["sigma"][i] / (size - 1),
        )
        centred = images - 0.5
        theirs = np.sqrt((centred * sin).sum((1, 2)) ** 2 + (centred * cos).sum((1, 2)) ** 2)
        assert np.corrcoef(theirs, ours[:, i])[0, 1] > 0.99, f"feature {i}"


def test_cache_is_used_verified_and_keyed_on_images(monkeypatch, tmp_path):
    images = _images(n=6)
    first = gabor_features(images, device="cpu", progress=False)
    files = list((tmp_path / "cache" / "features").glob("gabor-*.npz"))
    assert len(files) == 1

    def fail(*args, **kwargs):
        raise AssertionError("should have been read from the cache")

    monkeypatch.setattr(gabor, "gabor_energy", fail)
    np.testing.assert_array_equal(gabor_features(images, device="cpu", progress=False), first)
    # a different config or different images miss the cache
    with pytest.raises(AssertionError, match="cache"):
        gabor_features(images, GaborConfig(nonlinearity="sqrt"), device="cpu", progress=False)
    with pytest.raises(AssertionError, match="cache"):
        gabor_features(images[::-1].copy(), device="cpu", progress=False)
    # a corrupted file is not trusted: recomputed and replaced
    monkeypatch.undo()
    monkeypatch.setenv("ETECRM_CACHE", str(tmp_path / "cache"))
    files[0].write_bytes(b"not a numpy file")
    np.testing.assert_array_equal(gabor_features(images, device="cpu", progress=False), first)
    with np.load(files[0]) as stored:
        np.testing.assert_array_equal(stored["features"], first)


def test_bad_images_get_clear_errors():
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        gabor_features(np.zeros((2, 32, 32, 3), np.float32), cache=False)
    with pytest.raises(ValueError, match="images\\[None\\]"):
        gabor_features(np.zeros((32, 32), np.float32), cache=False)
    with pytest.raises(ValueError, match="square"):
        gabor_features(np.zeros((2, 32, 48), np.float32), cache=False)
    with pytest.raises(ValueError, match="multiple of the wavelength"):
        gabor_features(np.zeros((2, 100, 100), np.float32), cache=False)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        gabor_features(np.full((2, 32, 32), 255, np.float32), cache=False)
