"""Regression tests of issue 23 for the results runner: no lost result, no write outside ``--out``.

Reruns with other inputs (another dataset of the same name, other CNN weights), copied or renamed
results files, concurrent runs, hostile names in results files, damaged files on resume, and a
property test: across reruns with other inputs, a results folder only ever gains files. They use
the tiny dataset and the fast test-only ridge variants of ``test_reproduce.py``.
"""

import functools
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etecrm_lib import ablations
from etecrm_lib import reproduce as rp
from etecrm_lib import results as result_files
from etecrm_lib.cli import main as cli_main

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_reproduce import tiny_dataset  # noqa: E402  (registers the test variants)

ablations.register(
    ablations.Variant(
        "test_cnn_ridge",
        "two_step",
        "test only: a ridge that records CNN weights",
        {"alpha": 10.0, "features": "alexnet"},
        ablations.get_variant("test_proj_ridge").run,  # the ridge of test_reproduce.py
    ),
    replace=True,
)


def _run(data, out, models=("test_proj_ridge",), rois=("V1",), **kw):
    kw = {
        "first_seed": 0,
        "n_seeds": 1,
        "device": "cpu",
        "figures": False,
        "progress": False,
        "n_bootstrap": 100,
        "log": lambda *a: None,
    } | kw
    return rp.reproduce(data, out=out, models=list(models), rois=list(rois), **kw)


def _snapshot(out) -> dict:
    """Every file under ``out/results`` and ``out/ensembles`` with its bytes."""
    return {
        p.relative_to(out): p.read_bytes()
        for folder in ("results", "ensembles")
        for p in sorted((Path(out) / folder).glob("*"))
    }


def _only_added(before: dict, after: dict) -> bool:
    return all(after.get(name) == data for name, data in before.items())


@pytest.fixture(scope="module")
def data():
    return tiny_dataset()


@functools.cache
def _tiny(seed: int, n_train: int):
    return tiny_dataset(seed=seed, n_train=n_train)


# ------------------------------------------------------------------ 2. earlier results replaced
def test_another_dataset_of_the_same_name_never_overwrites_a_result(data, tmp_path):
    _run(data, tmp_path)
    before = _snapshot(tmp_path)
    other = tiny_dataset(seed=1)  # also named "tiny": other responses, the same file names
    with pytest.raises(ValueError, match="refusing to overwrite") as err:
        _run(other, tmp_path)
    assert "dataset_fingerprint" in str(err.value) and "another --out" in str(err.value)
    assert _snapshot(tmp_path) == before


def test_other_cnn_weights_never_overwrite_a_result(data, tmp_path):
    _run(data, tmp_path, models=("test_cnn_ridge",))
    before = _snapshot(tmp_path)
    with pytest.raises(ValueError, match="refusing to overwrite") as err:
        _run(data, tmp_path, models=("test_cnn_ridge",), cnn_weights="other.pth")
    assert "cnn_weights" in str(err.value) and "other.pth" in str(err.value)
    assert _snapshot(tmp_path) == before


def test_a_copied_or_renamed_results_file_is_not_another_seed(data, tmp_path):
    _run(data, tmp_path)
    (path,) = (tmp_path / "results").glob("*.npz")
    shutil.copy(path, path.with_name(path.stem + " (copy).npz"))
    shutil.copy(path, path.with_name(path.name.replace("_seed0", "_seed1")))
    with pytest.warns(UserWarning, match="name does not match") as caught:
        found = result_files.collect_results(tmp_path)
    assert len(found) == 1 and found[0].info["seed"] == 0 and len(caught) >= 2


def test_a_second_run_never_deletes_the_temp_file_of_a_run_in_progress(data, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    live = results / ".tiny_quick_sub1_V1_test_proj_ridge_seed1.npz.abc.part"
    live.write_bytes(b"being written by another run")
    stale = results / ".tiny_quick_sub1_V1_test_proj_ridge_seed2.npz.xyz.part"
    stale.write_bytes(b"left by a killed run")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    _run(data, tmp_path)
    assert live.exists() and not stale.exists()


# ------------------------------------------------------------------ 3. paths outside --out
@pytest.mark.parametrize("field", ["dataset", "roi", "model"])
def test_hostile_names_in_a_results_file_are_refused_on_read(data, tmp_path, field):
    """`etecrm table` on someone else's folder: a name like ../../x in a file's meta is never used
    for a path (the figure name comes from it)."""
    _run(data, tmp_path)
    (path,) = (tmp_path / "results").glob("*.npz")
    result = result_files.load_result(path)
    setattr(result, field, "../../escaped")
    result_files.save_result(result, path, profile="quick", seed=0, extra={"data_seed": None})
    with pytest.warns(UserWarning, match="cannot be part of a file name"):
        assert result_files.collect_results(tmp_path) == []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert cli_main(["table", "--out", str(tmp_path)]) == 2  # no usable results file
    assert not (tmp_path.parent / "escaped").exists()
    assert not list(tmp_path.parent.glob("escaped*"))


# ------------------------------------------------------------------ 4. damaged files on resume
def test_a_damaged_results_file_is_recomputed_on_resume(data, tmp_path):
    _run(data, tmp_path)
    (path,) = (tmp_path / "results").glob("*.npz")
    raw = bytearray(path.read_bytes())
    entry = raw.index(b"PK\x01\x02")  # the first member's central directory entry
    raw[entry + 10] = 99  # an unknown compression method: zipfile raises NotImplementedError
    path.write_bytes(bytes(raw))
    messages = []
    _run(data, tmp_path, log=messages.append)
    assert any("recomputing" in m for m in messages), messages
    result_files.load_result(path)  # whole again


# ------------------------------------------------------------------ property: only files added
@settings(
    max_examples=int(os.environ.get("HYP_N", 4)),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([0, 1]),  # which data (both named "tiny")
            st.sampled_from([None, "a.pth"]),  # CNN weights
            st.sampled_from(["V1", "V2"]),
            st.integers(0, 2),  # first seed
        ),
        min_size=2,
        max_size=3,
    )
)
def test_a_results_folder_only_gains_files_across_reruns(tmp_path_factory, runs):
    out = tmp_path_factory.mktemp("runs")
    datasets = {0: _tiny(0, 80), 1: _tiny(1, 40)}
    for which, weights, roi, first in runs:
        before = _snapshot(out)
        assert all(name.suffix == ".npz" for name in before)  # no temp file left behind
        try:
            _run(
                datasets[which],
                out,
                models=("test_proj_ridge", "test_cnn_ridge"),
                rois=(roi,),
                first_seed=first,
                cnn_weights=weights,
            )
        except ValueError as err:
            assert "refusing to overwrite" in str(err)
        assert _only_added(before, _snapshot(out))


def test_datasize_with_another_simulation_seed_never_replaces_a_run(tmp_path):
    from etecrm_lib import data_size

    config = data_size.DataSizeConfig.for_profile(
        "quick", sizes=(40, 80), models=("test_proj_ridge",), rois=("V1",), seeds=1, n_bootstrap=100
    )
    first, second = tiny_dataset(seed=0), tiny_dataset(seed=1)
    for ds, seed in ((first, 0), (second, 3)):  # as simulate() marks its datasets
        ds.info.update(generator_version=1, seed=seed, cache_key=f"simulation {seed}")
    data_size.run_data_size(config, dataset=first, out=tmp_path, progress=False)
    before = _snapshot(tmp_path) | {"curves.json": (tmp_path / "curves.json").read_bytes()}
    with pytest.raises(ValueError, match="refusing to overwrite") as err:
        data_size.run_data_size(config, dataset=second, out=tmp_path, progress=False)
    assert "simulation seed 0" in str(err.value) and "simulation seed 3" in str(err.value)
    after = _snapshot(tmp_path) | {"curves.json": (tmp_path / "curves.json").read_bytes()}
    assert after == before
