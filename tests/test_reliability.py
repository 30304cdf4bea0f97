"""Regression tests of issue 23: no silent wrong number, no lost result, no write outside ``--out``.

Each test is named after the failure it guards against and failed before its fix. Datasets here are
tiny and synthetic, so the whole file runs in seconds (the byte sweeps are the slowest part).
"""

import json
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from etecrm_lib import data_size, evaluation, storage, training
from etecrm_lib.data import from_arrays, load_npz, save_npz
from etecrm_lib.data.dataset import constant_columns
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


def _constant_voxel_arrays():
    """Voxel 0 is constant over the training images but varies over the test images."""
    rng = np.random.default_rng(3)
    train = rng.normal(size=(40, 5)).astype(np.float32)
    train[:, 0] = 0.7
    return (
        rng.uniform(size=(40, 8, 8)),
        {"V1": train},
        rng.uniform(size=(30, 8, 8)),
        {"V1": rng.normal(size=(30, 5))},
    )


def test_voxels_constant_over_training_are_dropped_with_a_warning():
    """They used to be kept, "score r = 0" said the warning, yet their test r (up to |0.39|)
    entered the ROI median; every model (gwp_roiwise too) now never sees them."""
    with pytest.warns(UserWarning, match="dropped 1 of 5 voxels whose responses are constant"):
        ds = from_arrays(*_constant_voxel_arrays())
    assert ds.n_voxels("V1") == 4 and ds.info["constant_voxels"] == {"V1": 1}
    result = evaluation.score(ds.test.responses["V1"] + 0.3, ds, "V1", "m")
    assert result.n_voxels == 4
    tr_x, tr_y, te_x, te_y = _constant_voxel_arrays()
    tr_y["V1"][:, 1:] = 5.0
    with pytest.raises(ValueError, match="no usable voxel.*5 are constant over the 40 training"):
        from_arrays(tr_x, tr_y, te_x, te_y)


def test_constant_test_is_relative_to_the_responses_scale():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(50, 4))
    for scale in (1e-20, 1.0, 1e20):
        assert not constant_columns(y * scale).any()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            training.check_responses(y * scale, 50)
    flat = y.copy()
    flat[:, 2] = 1e-20
    assert constant_columns(flat).tolist() == [False, False, True, False]
    tr_x, tr_y, te_x, te_y = _constant_voxel_arrays()
    tr_y["V1"][:, 0] = np.random.default_rng(1).normal(size=40)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tiny = from_arrays(tr_x, {"V1": tr_y["V1"] * 1e-20}, te_x, te_y)
    assert tiny.n_voxels("V1") == 5


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


@pytest.mark.slow  # a few thousand loads: 10-30 s on 2 cores
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


@pytest.mark.slow  # a few thousand loads: 10-30 s on 2 cores
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


# ------------------------------------------------------------------ 5-6. the command line
@pytest.fixture
def cli(monkeypatch, capsys):
    """``cli(argv) -> (exit status, stderr)`` with the work itself replaced by ``work`` (a dict
    command -> function of the parsed keywords), so that nothing trains."""
    from etecrm_lib import cli as cli_module

    monkeypatch.delenv("ETECRM_DEBUG", raising=False)
    ran = []

    def run(argv, work=None, real=False):
        for name in () if real else ("reproduce", "run_data_size"):
            monkeypatch.setattr(cli_module, name, (work or {}).get(name, _record(ran, name)))
        status = cli_module.main(argv)
        return status, capsys.readouterr().err

    run.ran = ran
    return run


def _record(ran, name):
    def work(*args, **kwargs):
        ran.append((name, args, kwargs))
        return []

    return work


@pytest.mark.parametrize("device", ["mps", "meta", "tpu"])
def test_unsupported_devices_are_refused_in_one_line(cli, tmp_path, device):
    for argv in (
        ["reproduce", "--device", device, "--out", str(tmp_path)],
        ["datasize", "--device", device, "--out", str(tmp_path)],
    ):
        status, err = cli(argv)
        assert status == 2 and "is not supported" in err and len(err.strip().splitlines()) == 1
    assert not cli.ran
    with pytest.raises(ValueError, match="is not supported"):
        from etecrm_lib.device import get_device

        get_device(device)


def test_flags_are_never_abbreviated(cli, tmp_path):
    with pytest.raises(SystemExit):  # argparse: "unrecognized arguments: --seed 4"
        cli(["reproduce", "--seed", "4", "--out", str(tmp_path)])
    assert not cli.ran


@pytest.mark.parametrize("flag", ["--models", "--rois"])
@pytest.mark.parametrize("command", ["reproduce", "datasize"])
def test_empty_name_lists_are_refused(cli, tmp_path, flag, command):
    for value in ("", ",", " "):
        status, err = cli([command, flag, value, "--out", str(tmp_path)])
        assert status == 2 and f"{flag} was given but names nothing" in err
    assert not cli.ran


def test_datasize_seeds_zero_is_refused_not_read_as_the_default(cli, tmp_path):
    status, err = cli(["datasize", "--seeds", "0", "--out", str(tmp_path)])
    assert status == 2 and "--seeds must be at least 1" in err and not cli.ran
    assert cli(["datasize", "--seeds", "1", "--out", str(tmp_path)])[0] == 0
    assert cli.ran[0][1][0].seeds == 1  # run_data_size(config, ...)


@pytest.mark.parametrize(
    "argv",
    [
        ["reproduce", "--first-seed", str(2**64)],
        ["reproduce", "--data-seed", str(2**40)],
        ["reproduce", "--first-seed", str(2**31 - 1), "--seeds", "2"],
        ["datasize", "--simulation-seed", str(2**31)],
        ["data", "simulate", "--seed", str(2**40)],
    ],
)
def test_seeds_are_bounded_where_they_enter(cli, tmp_path, argv):
    status, err = cli([*argv, *(["--out", str(tmp_path)] if argv[0] != "data" else [])])
    assert status == 2 and "2147483647" in err and not cli.ran


def test_seed_bounds_hold_in_the_python_api_and_a_far_seed_set_has_a_short_name(tmp_path):
    from etecrm_lib.reproduce import check_settings
    from etecrm_lib.results import seeds_label

    with pytest.raises(ValueError, match="seeds must be from 0 to 2147483647"):
        check_settings(tmp_path, first_seed=2**64)
    assert seeds_label([0, 2**40]) == "0+1099511627776"  # was a MemoryError (a list of 2**40)
    assert seeds_label([3, 4, 5]) == "3-5"


def _raising(err):
    def work(*args, **kwargs):
        raise err

    return work


@pytest.mark.parametrize(
    "error, shown",
    [
        (FloatingPointError("ETECRM diverged at epoch 1, batch 1"), "diverged at epoch 1"),
        (KeyError(101), "error: 101"),
        (
            RuntimeError(
                "could not get them.\n  - with internet, weights='DEFAULT' works;\n"
                "  - or pass weights=None"
            ),
            "--cnn-weights DEFAULT works; or pass --cnn-weights none",
        ),
        (MemoryError(), "out of memory"),
        (CorruptFileError("x.npz is damaged"), "x.npz is damaged"),
    ],
)
def test_every_expected_error_is_one_line_in_the_commands_spelling(
    cli, tmp_path, monkeypatch, error, shown
):
    status, err = cli(["reproduce", "--out", str(tmp_path)], {"reproduce": _raising(error)})
    assert status == 2 and shown in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and "ETECRM_DEBUG=1" in err
    monkeypatch.setenv("ETECRM_DEBUG", "1")
    with pytest.raises(type(error)):
        cli(["reproduce", "--out", str(tmp_path)], {"reproduce": _raising(error)})


@pytest.mark.parametrize("content", ["text", "pickle", "offline"])
def test_bad_or_unreachable_cnn_weights_end_in_one_line(cli, tmp_path, monkeypatch, content):
    from etecrm_lib.features.cnn import load_cnn

    path = tmp_path / "w.pth"
    if content == "text":
        path.write_text("hello\n")
    elif content == "pickle":
        torch.save({"x": _Evil()}, path)
    else:
        path = "DEFAULT"

        def offline(*args, **kwargs):
            raise OSError("no network")

        monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)

    def load(**kwargs):
        load_cnn("alexnet", kwargs["cnn_weights"])

    status, err = cli(
        ["reproduce", "--cnn-weights", str(path), "--out", str(tmp_path / "out")],
        {"reproduce": load},
    )
    assert status == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "weights_only" not in err and "error: 101" not in err


def _write_result(out, seed, dataset="custom", roi="V1", model="etecrm"):
    from etecrm_lib.results import result_path

    res = _small_result()
    res.dataset, res.roi, res.model = dataset, roi, model
    path = result_path(out, dataset, "quick", 1, roi, model, seed)
    return save_result(res, path, profile="quick", seed=seed, extra={"data_seed": None})


@pytest.mark.parametrize(
    "content",
    [
        "[1, 2]",
        '[{"roi": "V1"}]',
        '{"not": "a list"}',
        "[" * 100000,
        '[{"kind": "ablation", "dataset": "../../x", "profile": "quick", "subject": 1, '
        '"model_a": "a", "model_b": "b", "roi": "V1", "statistic": "median_r", '
        '"difference": 0.1, "ci_low": 0, "ci_high": 0.2, "p_a_not_better": 0.01, '
        '"n_bootstrap": 100, "seeds_a": [0], "seeds_b": [0]}]',
    ],
)
def test_a_malformed_comparisons_file_is_skipped_with_a_warning(cli, tmp_path, content):
    _write_result(tmp_path, 0)
    (tmp_path / "comparisons").mkdir()
    (tmp_path / "comparisons" / "bad.json").write_text(content)
    with pytest.warns(UserWarning, match="skipping"):
        status, err = cli(["table", "--out", str(tmp_path), "--no-figures"])
    assert status == 0, err
    assert json.loads((tmp_path / "comparisons.json").read_text()) == []


def test_seeds_far_apart_in_one_folder_make_a_table(cli, tmp_path):
    _write_result(tmp_path, 0)
    _write_result(tmp_path, 2**40)
    status, err = cli(["table", "--out", str(tmp_path), "--no-figures"])
    assert status == 0, err
    assert (tmp_path / "table.md").exists()


# ------------------------------------------------------------------ 3. names and paths
def _safe_by_definition(name: str) -> bool:
    return (
        bool(name)
        and name.isprintable()
        and not any(bad in name for bad in ("/", "\\", ".."))
        and not name.startswith(".")
    )


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=12) | st.sampled_from(["..", "../x", "/abs/x", "a\\b", ".hidden", "V1"]))
def test_the_name_rule_accepts_exactly_single_safe_path_parts(name):
    try:
        accepted = storage.check_name(name) == name
    except storage.UnsafeNameError:
        accepted = False
    assert accepted == _safe_by_definition(name)
    if accepted:  # one path part inside its folder, whatever the rest of a file name
        root = Path("/tmp/etecrm-out")
        for part in (name, f"{name}_quick_sub1_V1_etecrm_seed0.npz"):
            assert (root / part).parent == root and storage.check_inside(root / part, root)


@pytest.mark.parametrize("name", ["../../x", "/abs/x", "a/b", "a\\b", "..", ".x", ""])
def test_unsafe_dataset_and_roi_names_are_refused_where_data_enter(name):
    tr_x, tr_y, te_x, te_y = _constant_voxel_arrays()
    tr_y["V1"][:, 0] = np.arange(40)
    with pytest.raises(storage.UnsafeNameError, match="cannot be part of a file name"):
        from_arrays(tr_x, tr_y, te_x, te_y, name=name)
    with pytest.raises(storage.UnsafeNameError, match="cannot be part of a file name"):
        from_arrays(tr_x, {name: tr_y["V1"]}, te_x, {name: te_y["V1"]})


@pytest.mark.parametrize("name", ["../../x", "/abs/x"])
def test_a_dataset_file_with_a_traversing_name_writes_nothing(cli, tmp_path, name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        path = save_npz(_tiny(), tmp_path / "data" / "d.npz")
    arrays = dict(np.load(path))
    arrays["meta_name"] = np.array(name)
    np.savez_compressed(path, **arrays)
    out = tmp_path / "deep" / "er" / "out"
    status, err = cli(
        ["reproduce", "--dataset", str(path), "--out", str(out), "--no-figures"], real=True
    )
    assert status == 2 and "cannot be part of a file name" in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["d.npz", "data"]
