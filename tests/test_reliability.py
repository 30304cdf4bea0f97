"""Regression tests of issue 23: no silent wrong number, no lost result, no write outside ``--out``.

Each test is named after the failure it guards against and failed before its fix. Datasets here are
tiny and synthetic, so the whole file runs in seconds (the byte sweeps are the slowest part).
"""

import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from etecrm_lib import data_size, evaluation, storage, training
from etecrm_lib.data import from_arrays, load_npz, save_npz
from etecrm_lib.evaluation import EncodingResult, paired_bootstrap
from etecrm_lib.results import load_result, save_result
from etecrm_lib.storage import CorruptFileError


def _tiny(n_train=40, n_test=25, n_vox=6, size=8, seed=0, name="custom"):
    rng = np.random.default_rng(seed)
    return from_arrays(
        rng.uniform(size=(n_train, size, size)),
        {"V1": rng.normal(size=(n_train, n_vox))},
        rng.uniform(size=(n_test, size, size)),
        test_repeats={"V1": rng.normal(size=(2, n_test, n_vox))},
        name=name,
    )


# ------------------------------------------------------------------ 1. silent wrong numbers
@pytest.mark.parametrize("n_test", [1, 2])
def test_fewer_than_three_test_images_are_refused(n_test):
    with pytest.raises(ValueError, match="at least 3"):
        _tiny(n_test=n_test)


def test_few_test_images_give_a_warning():
    with pytest.warns(UserWarning, match="only 10 images"):
        _tiny(n_test=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _tiny(n_test=20)


def _result(predictions, model="a", seed=0):
    return EncodingResult(
        model, "V1", "d", 1, np.zeros(predictions.shape[1]), None, None, predictions, {"seed": seed}
    )


@pytest.mark.parametrize("n", [0, 1, 5, 99])
def test_every_bootstrap_refuses_too_few_resamples(n):
    rng = np.random.default_rng(0)
    y = rng.normal(size=(30, 8))
    a, b = _result(y + rng.normal(size=y.shape)), _result(rng.normal(size=y.shape), "b")
    with pytest.raises(ValueError, match="at least 100 resamples"):
        paired_bootstrap(a, b, y, n_bootstrap=n)
    with pytest.raises(ValueError, match="at least 100 resamples"):
        evaluation.bootstrap_interval(a, y, n_bootstrap=n)
    with pytest.raises(ValueError, match="at least 100 resamples"):
        data_size.DataSizeConfig.for_profile("quick", n_bootstrap=n)
    if n:  # 0 means "no interval" for the rank correlation, as documented
        with pytest.raises(ValueError, match="at least 100 resamples"):
            evaluation.rank_correlation(y[0], y[1], n_bootstrap=n)
    assert paired_bootstrap(a, b, y, n_bootstrap=100).n_bootstrap == 100


def _constant_voxel_dataset():
    """Voxel 0 is constant over the training images but varies over the test images."""
    rng = np.random.default_rng(3)
    train = rng.normal(size=(40, 5)).astype(np.float32)
    train[:, 0] = 0.7
    return from_arrays(
        rng.uniform(size=(40, 8, 8)),
        {"V1": train},
        rng.uniform(size=(30, 8, 8)),
        test_repeats={"V1": rng.normal(size=(2, 30, 5))},
    )


def test_voxels_constant_over_training_score_zero_everywhere():
    ds = _constant_voxel_dataset()
    predictions = ds.test.responses["V1"] + 0.3  # a "model" that would score r = 1 on voxel 0
    with pytest.warns(UserWarning, match="1 of 5 voxels are constant over the training images"):
        res = evaluation.score(predictions, ds, "V1", "m")
    assert res.test_r[0] == 0 and res.test_r[1] > 0.99 and res.info["constant_train_voxels"] == 1
    # the same 0 under every bootstrap resample: the stored predictions are constant for that voxel
    counts = evaluation.image_resamples(30, 50, torch.Generator().manual_seed(0))
    per_voxel = evaluation.correlation(
        torch.as_tensor(res.predictions, dtype=torch.float64),
        torch.as_tensor(ds.test.responses["V1"], dtype=torch.float64),
        counts,
    )
    assert torch.all(per_voxel[:, 0] == 0)


def test_gwp_roiwise_warns_about_voxels_constant_over_training(tmp_path, monkeypatch):
    from etecrm_lib.two_step import RoiwiseConfig, TwoStepConfig, TwoStepModel

    monkeypatch.setenv("ETECRM_CACHE", str(tmp_path))
    cfg = TwoStepConfig.for_profile("quick", cnn_weights=None)
    cfg.roiwise = RoiwiseConfig.for_profile("quick", epochs=1)
    model = TwoStepModel("gwp_roiwise", cfg, device="cpu", progress=False)
    ds = _constant_voxel_dataset()
    with pytest.warns(UserWarning, match="1 of 5 voxels of ROI 'V1' have constant responses"):
        model.fit(ds, "V1")


def test_constant_test_is_relative_to_the_responses_scale():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(50, 4))
    for scale in (1e-20, 1.0, 1e20):
        assert not evaluation.constant_columns(y * scale).any()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            training.check_responses(y * scale, 50)
    flat = y.copy()
    flat[:, 2] = 1e-20
    assert evaluation.constant_columns(flat).tolist() == [False, False, True, False]


# ------------------------------------------------------------------ 4. damaged files
def _small_result():
    rng = np.random.default_rng(0)
    predictions = rng.normal(size=(6, 3)).astype(np.float32)
    return EncodingResult(
        "etecrm",
        "V1",
        "sim",
        1,
        rng.uniform(size=3).astype(np.float32),
        rng.uniform(size=3).astype(np.float32),
        None,
        predictions,
        {"val_r": rng.uniform(size=3).astype(np.float32), "device": "cpu"},
    )


def _flipped(data: bytes, i: int) -> bytes:
    return data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]


def _sweep(original: Path, load, same) -> dict:
    """Flip every byte of ``original`` once; count identical loads and the project's errors.
    Any other exception fails the test (it is raised)."""
    clean, data = load(original), original.read_bytes()
    damaged = original.with_name("damaged" + original.suffix)
    counts = {"bytes": len(data), "identical": 0, "refused": 0}
    for i in range(len(data)):
        damaged.write_bytes(_flipped(data, i))
        try:
            loaded = load(damaged)
        except CorruptFileError:
            counts["refused"] += 1
            continue
        assert same(loaded, clean), f"byte {i} changed what was loaded without an error"
        counts["identical"] += 1
    return counts


def test_every_damaged_byte_of_a_results_file_is_refused_or_harmless(tmp_path):
    path = save_result(_small_result(), tmp_path / "r.npz", profile="quick", seed=0)

    def same(a, b):
        return (
            all(
                np.array_equal(getattr(a, k), getattr(b, k))
                for k in ("test_r", "noise_ceiling", "predictions")
            )
            and (
                {k: v for k, v in a.info.items() if k not in ("results_file", "val_r")}
                == {k: v for k, v in b.info.items() if k not in ("results_file", "val_r")}
            )
            and np.array_equal(a.info["val_r"], b.info["val_r"])
        )

    counts = _sweep(path, load_result, same)
    print("results-file sweep:", counts)  # the counts the issue asks for
    assert counts["refused"] > counts["bytes"] // 2


def test_every_damaged_byte_of_a_dataset_file_is_refused_or_harmless(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # few test images
        ds = _tiny(n_train=4, n_test=3, n_vox=2, size=4)
        path = save_npz(ds, tmp_path / "d.npz")

        def load(p):
            return load_npz(p)

        def same(a, b):
            return a.describe() == b.describe() and all(
                np.array_equal(x, y) for x, y in zip(_arrays_of(a), _arrays_of(b))
            )

        counts = _sweep(path, load, same)
    print("dataset-file sweep:", counts)
    assert counts["refused"] > counts["bytes"] // 2


def _arrays_of(ds):
    roi = ds.rois[0]
    return (
        ds.train.stimuli,
        ds.test.stimuli,
        ds.train.responses[roi],
        ds.test.responses[roi],
        ds.test.repeats[roi],
        ds.voxels[roi].volume_index,
        ds.voxels[roi].affine,
    )


def test_a_damaged_feature_cache_file_is_recomputed(tmp_path, monkeypatch):
    from etecrm_lib.features import cache

    monkeypatch.setenv("ETECRM_CACHE", str(tmp_path))
    images = np.random.default_rng(0).uniform(size=(5, 8, 8)).astype(np.float32)

    def compute(x):
        return x.reshape(len(x), -1)[:, :3] * 2

    first = cache.cached_features("test", {"a": 1}, images, compute)
    (path,) = (tmp_path / "features").glob("*.npz")
    data = path.read_bytes()
    path.write_bytes(_flipped(data, len(data) // 2))  # inside the array: a bad CRC-32
    with pytest.warns(UserWarning, match="recomputing it"):
        again = cache.cached_features("test", {"a": 1}, images, compute)
    np.testing.assert_array_equal(first, again)
    assert cache.read_cache("test", cache.cache_key({"a": 1}, images), 5) is not None  # replaced


def test_a_zip_bomb_is_refused_before_inflating(tmp_path, monkeypatch):
    monkeypatch.setattr(storage, "SMALL_FILE", 1 << 20)
    bomb = tmp_path / "bomb.npz"
    np.savez_compressed(bomb, train_stimuli=np.zeros((64, 128, 128), np.float32))  # 4 MB of zeros
    assert bomb.stat().st_size * storage.MAX_INFLATION < 4 << 20

    def never(*args, **kwargs):
        raise AssertionError("an array was inflated")

    monkeypatch.setattr(np.lib.format, "read_array", never)
    with pytest.raises(CorruptFileError, match="refused before inflating"):
        load_npz(bomb)


def test_pickled_arrays_are_refused_without_numpys_unsafe_advice(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, train_stimuli=np.array([{"a": 1}], dtype=object))
    with pytest.raises(CorruptFileError) as err:
        load_npz(path)
    assert "never loads" in str(err.value) and "allow_pickle" not in str(err.value)
    pickled = tmp_path / "pickled.npz"
    pickled.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CorruptFileError) as err:
        load_npz(pickled)
    assert "allow_pickle" not in str(err.value) and "unsafe" not in str(err.value)


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.parametrize("content", ["text", "pickle"])
def test_a_bad_weights_file_is_a_corrupt_file_error_in_one_line(tmp_path, content):
    from etecrm_lib.features.cnn import load_cnn

    path = tmp_path / "weights.pth"
    if content == "text":
        path.write_text("hello world\n")
    else:
        torch.save({"x": _Evil()}, path)
    with pytest.raises(CorruptFileError, match="not a weights file etecrm can read") as err:
        load_cnn("alexnet", str(path))
    assert "\n" not in str(err.value) and "weights_only" not in str(err.value)
