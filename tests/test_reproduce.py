"""`etecrm reproduce`: results files, resume after Ctrl-C / kill, corruption detection, tables.

Most tests use a tiny made-up dataset (16x16 images) and two test-only variants, registered below:
ridge regression on a seeded random projection of the pixels (so a wrong seed changes the numbers).
Two of them are a group, trained together like the batched ETECRM variants. The subprocess tests run
the real command line through ``python -c`` so that the test variants are registered there too.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from etecrm_lib import ablations, reproduce as rp
from etecrm_lib.cli import main as cli_main
from etecrm_lib.data import from_arrays, save_npz
from etecrm_lib.evaluation import score

TEST_MODELS = ["test_proj_ridge", "test_group_a", "test_group_b"]
TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent


# ----------------------------------------------------------------------------- test-only pieces
def tiny_dataset(seed=0, n_train=80, n_test=20, size=16, n_repeats=4):
    """Images of noise; voxels respond linearly to a few pixels, plus trial noise."""
    rng = np.random.default_rng(seed)
    train, test = rng.random((n_train, size, size), dtype=np.float32), rng.random((n_test, size, size), dtype=np.float32)
    responses, repeats, oracle = {}, {}, {}
    for roi, n_vox in (("V1", 25), ("V2", 15)):  # odd: torch.median (bootstrap) = np.median
        w = rng.normal(size=(size * size, n_vox)) * (rng.random((size * size, n_vox)) < 0.05)
        gain = np.linspace(0.0, 1.0, n_vox)  # from ineffective to well-driven voxels
        f_train, f_test = train.reshape(n_train, -1) @ w * gain, test.reshape(n_test, -1) @ w * gain
        responses[roi] = (f_train + rng.normal(size=f_train.shape)).astype(np.float32)
        repeats[roi] = (f_test[None] + rng.normal(size=(n_repeats, *f_test.shape))).astype(np.float32)
        oracle[roi] = f_test.astype(np.float32)
    return from_arrays(train, responses, test, test_repeats=repeats, test_oracle=oracle, name="tiny", subject=1)


def _proj_ridge(dataset, variants, roi, **settings):
    """Ridge on a random projection of the pixels; one projection shared by the variants of the group."""
    delay = float(os.environ.get("ETECRM_TEST_DELAY", "0"))
    x_train = torch.as_tensor(dataset.train.stimuli.reshape(dataset.train.n_images, -1), dtype=torch.float64)
    x_test = torch.as_tensor(dataset.test.stimuli.reshape(dataset.test.n_images, -1), dtype=torch.float64)
    proj = torch.randn(x_train.shape[1], 64, dtype=torch.float64)  # seeded by run_unit
    f_train, f_test = x_train @ proj, x_test @ proj
    mu, sd = f_train.mean(0), f_train.std(0)
    f_train, f_test = (f_train - mu) / sd, (f_test - mu) / sd
    y = torch.as_tensor(dataset.train.responses[roi], dtype=torch.float64)
    results = []
    for variant in variants:
        time.sleep(delay)
        alpha = variant.options["alpha"]
        w = torch.linalg.solve(f_train.T @ f_train + alpha * torch.eye(f_train.shape[1], dtype=torch.float64), f_train.T @ (y - y.mean(0)))
        train_r = torch.nn.functional.cosine_similarity(f_train @ w, y - y.mean(0), dim=0)  # an info array, like voxel weights
        results.append(score(f_test @ w + y.mean(0), dataset, roi, variant.name, info={"config": {"alpha": alpha}, "train_r": train_r}))
    return results


def register_test_variants():
    for name, alpha, group in (("test_proj_ridge", 10.0, ""), ("test_group_a", 1.0, "test_group"), ("test_group_b", 100.0, "test_group")):
        ablations.register(ablations.Variant(name, "two_step", f"test only: ridge (alpha {alpha}) on random pixel projections",
                                             {"alpha": alpha}, _proj_ridge, group), replace=True)


register_test_variants()

_CLI_SCRIPT = ("import sys; sys.path.insert(0, {tests!r}); import test_reproduce; "
               "from etecrm_lib.cli import main; sys.exit(main(sys.argv[1:]))")


def cli_command(data_file, out, models=TEST_MODELS):
    return [sys.executable, "-c", _CLI_SCRIPT.format(tests=str(TESTS_DIR)), "reproduce", "--dataset", str(data_file),
            "--profile", "quick", "--seed", "3", "--out", str(out), "--device", "cpu", "--no-figures", "--quiet",
            "--bootstrap", "50", "--models", *models]


def numbers(out):
    """table.json without the fields that legitimately differ between runs (wall time)."""
    rows = json.loads((Path(out) / "table.json").read_text())
    return [{k: v for k, v in row.items() if k != "wall_time_s"} for row in rows]


def run_quiet(data, out, **kw):
    kw = {"models": TEST_MODELS, "seed": 3, "device": "cpu", "figures": False, "progress": False,
          "n_bootstrap": 50, "log": lambda *a: None} | kw
    return rp.reproduce(data, out=out, **kw)


@pytest.fixture(scope="module")
def data():
    return tiny_dataset()


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """An uninterrupted run: its folder and results."""
    out = tmp_path_factory.mktemp("reference")
    return out, run_quiet(data, out)


# ----------------------------------------------------------------------------- results files
def test_results_file_round_trip_keeps_arrays_and_provenance(reference):
    out, results = reference
    res = results[0]
    path = rp.result_path(out, "tiny", "quick", 1, res.roi, res.model, 3)
    assert path.exists()
    loaded = rp.load_result(path)
    np.testing.assert_array_equal(loaded.test_r, res.test_r)
    np.testing.assert_array_equal(loaded.noise_ceiling, res.noise_ceiling)
    assert loaded.predictions.shape == (20, res.n_voxels)
    meta = rp.read_meta(path)
    info = meta["info"]
    for key in ("library_version", "git_commit", "torch_version", "device", "wall_time_s", "config", "seed", "options"):
        assert key in info, key
    assert meta["seed"] == 3 and meta["profile"] == "quick" and meta["model"] == res.model
    assert info["config"] == {"alpha": 10.0}
    assert "train_r" not in info and loaded.info["train_r"].shape == (res.n_voxels,)  # stored as an array
    np.testing.assert_allclose(loaded.info["train_r"], res.info["train_r"], atol=1e-6)
    # predictions are stored as float16 but still agree with the float32 r to ~1e-3
    r16 = np.array([np.corrcoef(loaded.predictions[:, v], reference_data_test(loaded.roi)[:, v])[0, 1]
                    for v in range(loaded.n_voxels)])
    np.testing.assert_allclose(r16, loaded.test_r, atol=5e-3)


def reference_data_test(roi):
    return tiny_dataset().test.responses[roi]


def test_saved_r_matches_an_independent_recomputation(data, reference):
    """test_r in the files is Pearson r of the test predictions (checked against numpy)."""
    _, results = reference
    for res in results:
        measured = data.test.responses[res.roi]
        expected = [np.corrcoef(res.predictions[:, v], measured[:, v])[0, 1] for v in range(res.n_voxels)]
        np.testing.assert_allclose(res.test_r, expected, atol=5e-3)


def test_table_rows_match_per_model_results(reference):
    out, results = reference
    rows = json.loads((out / "table.json").read_text())
    assert len(rows) == len(results) == 2 * len(TEST_MODELS)
    by_key = {(r["roi"], r["model"]): r for r in rows}
    for res in results:
        row = by_key[(res.roi, res.model)]
        assert row["n_voxels"] == res.n_voxels
        assert row["median_r"] == pytest.approx(float(np.median(res.test_r)), abs=1e-7)
        top = np.sort(res.test_r.astype(np.float64))[::-1][:300].mean()
        assert row["top300_mean_r"] == pytest.approx(top, abs=1e-7)
        c2 = np.sum(res.noise_ceiling.astype(np.float64) ** 2)
        assert row["frac_ceiling"] == pytest.approx(np.sum(np.clip(res.test_r, 0, None).astype(np.float64) ** 2) / c2, rel=1e-6)
    md, csv_text = (out / "table.md").read_text(), (out / "table.csv").read_text()
    assert "| V1 | test_group_a |" in md and md.count("\n| V") == len(results)
    assert csv_text.splitlines()[0].startswith("dataset,profile,subject,seed,roi,model,n_voxels,median_r")
    assert len(csv_text.strip().splitlines()) == len(results) + 1


def test_each_unit_starts_from_the_seed(data, reference):
    """A unit's numbers do not depend on what ran before it: the group member run alone, later, agrees."""
    _, results = reference
    alone = ablations.run_variants(data, ["test_group_b"], rois=["V2"], seed=3, device="cpu", progress=False)[0]
    together = next(r for r in results if r.model == "test_group_b" and r.roi == "V2")
    # same projection only if the group members draw it once from the same seed
    np.testing.assert_allclose(alone.test_r, together.test_r, atol=1e-6)


def test_second_run_skips_everything(data, reference, tmp_path):
    out, _ = reference
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "results").glob("*.npz")}
    calls = []
    original = ablations.run_unit
    ablations.run_unit = lambda *a, **k: calls.append(a) or original(*a, **k)
    try:
        again = run_quiet(data, out)
    finally:
        ablations.run_unit = original
    assert calls == []
    assert {p: p.stat().st_mtime_ns for p in (out / "results").glob("*.npz")} == mtimes
    assert [r.model for r in again] == [r.model for r in reference[1]]


def test_other_seed_gives_other_numbers_and_other_files(data, reference, tmp_path):
    results = run_quiet(data, tmp_path, seed=4, models=["test_proj_ridge"], rois=["V1"])
    ref = next(r for r in reference[1] if r.model == "test_proj_ridge" and r.roi == "V1")
    assert not np.allclose(results[0].test_r, ref.test_r)
    assert (tmp_path / "results" / "tiny_quick_sub1_V1_test_proj_ridge_seed4.npz").exists()


def _rewrite(path, meta_edit=None, array_edit=None, raw_meta=None):
    """Rewrite a results file with edited metadata or arrays, keeping everything else."""
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("meta")))
    if meta_edit:
        meta_edit(meta)
    if array_edit:
        array_edit(arrays)
    with open(path, "wb") as f:
        np.savez_compressed(f, meta=np.array(raw_meta if raw_meta is not None else json.dumps(meta)), **arrays)


def _set_bad_shape(arrays):
    arrays["test_r"] = arrays["test_r"][:-1]


def _drop_last_voxel(path):
    """A self-consistent file (shapes, checksums) for one voxel fewer than the dataset has."""
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("meta")))
    arrays = {k: np.ascontiguousarray(a[..., :-1]) for k, a in arrays.items()}
    meta["n_voxels"] -= 1
    meta["arrays"] = {k: {"shape": list(a.shape), "dtype": str(a.dtype), "sha256": rp._sha256(a)} for k, a in arrays.items()}
    with open(path, "wb") as f:
        np.savez_compressed(f, meta=np.array(json.dumps(meta)), **arrays)
    rp.load_result(path)  # readable on its own: only the comparison with the dataset can tell


CORRUPTIONS = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "empty": lambda p: p.write_bytes(b""),
    "bad_json": lambda p: _rewrite(p, raw_meta='{"format": 1, "roi": '),
    "checksum": lambda p: _rewrite(p, array_edit=lambda a: a.__setitem__("test_r", a["test_r"] + np.float32(0.01))),
    "wrong_shape": lambda p: _rewrite(p, array_edit=_set_bad_shape),
    "consistent_but_fewer_voxels": lambda p: _drop_last_voxel(p),
    "missing_array": lambda p: _rewrite(p, array_edit=lambda a: a.pop("noise_ceiling")),
    "other_data": lambda p: _rewrite(p, meta_edit=lambda m: m.update(dataset_fingerprint="0" * 16)),
}


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_corrupt_results_file_is_detected_and_recomputed(data, reference, tmp_path, kind):
    out_ref, _ = reference
    out = tmp_path / "run"
    (out / "results").mkdir(parents=True)
    for p in (out_ref / "results").glob("*.npz"):
        (out / "results" / p.name).write_bytes(p.read_bytes())
    victim = out / "results" / "tiny_quick_sub1_V2_test_group_a_seed3.npz"
    CORRUPTIONS[kind](victim)
    if kind not in ("consistent_but_fewer_voxels", "other_data"):
        with pytest.raises(rp.CorruptResultError):
            rp.load_result(victim)
    messages = []
    run_quiet(data, out, log=messages.append)
    assert any("recomputing" in m and victim.name in m for m in messages), messages
    assert rp.load_result(victim).n_voxels == 15
    assert numbers(out) == numbers(out_ref)


def test_bootstrap_comparison_picks_the_best_two_step_model(data, reference):
    _, results = reference
    comparisons = rp.compare_to_best_two_step(results, data, reference="test_group_a", n_bootstrap=200)
    assert [(c["roi"], c["statistic"]) for c in comparisons] == [
        ("V1", "median_r"), ("V1", "top_n_mean_r"), ("V2", "median_r"), ("V2", "top_n_mean_r")]
    for c in comparisons:
        others = [r for r in results if r.roi == c["roi"] and r.model != "test_group_a"]
        best = max(others, key=lambda r: np.median(r.test_r))
        assert c["model_b"] == best.model == "test_group_b"  # the least regularised is worst here
        ours = next(r for r in results if r.roi == c["roi"] and r.model == "test_group_a")
        if c["statistic"] == "median_r":
            assert c["difference"] == pytest.approx(np.median(ours.test_r) - np.median(best.test_r), abs=2e-3)
        assert c["ci_low"] <= c["difference"] <= c["ci_high"]


def test_load_result_checks_expectations(reference):
    out, results = reference
    path = rp.result_path(out, "tiny", "quick", 1, "V1", "test_proj_ridge", 3)
    rp.load_result(path, {"roi": "V1", "n_voxels": 25})
    with pytest.raises(rp.CorruptResultError, match="n_voxels"):
        rp.load_result(path, {"n_voxels": 26})


def test_partial_temp_files_are_cleaned(data, reference, tmp_path):
    out = tmp_path
    (out / "results").mkdir()
    stale = out / "results" / ".tiny_quick_sub1_V1_test_proj_ridge_seed3.npz.abc.part"
    stale.write_bytes(b"half a file")
    other = out / "results" / ".tiny_quick_sub2_V1_test_proj_ridge_seed3.npz.xyz.part"  # another subject's run
    other.write_bytes(b"being written")
    run_quiet(data, out, models=["test_proj_ridge"], rois=["V1"])
    assert not stale.exists() and other.exists()


def test_comparisons_of_several_runs_are_merged(reference, tmp_path):
    rp.save_comparisons(tmp_path, [{"subject": 1, "roi": "V1"}], "sim", 1, "full")
    rp.save_comparisons(tmp_path, [{"subject": 2, "roi": "V1"}, {"subject": 2, "roi": "V2"}], "sim", 2, "full")
    rp.save_comparisons(tmp_path, [{"subject": 1, "roi": "V4"}], "sim", 1, "full")  # a rerun replaces its own
    assert rp.load_comparisons(tmp_path) == [{"subject": 1, "roi": "V4"}, {"subject": 2, "roi": "V1"},
                                             {"subject": 2, "roi": "V2"}]


def test_unknown_model_and_roi_are_clear_errors(data, tmp_path):
    with pytest.raises(KeyError, match="known:"):
        run_quiet(data, tmp_path, models=["no_such_model"])
    with pytest.raises(KeyError, match="available ROIs"):
        run_quiet(data, tmp_path, rois=["V9"])


# ----------------------------------------------------------------------------- the command line
@pytest.fixture(scope="module")
def data_file(data, tmp_path_factory):
    return save_npz(data, tmp_path_factory.mktemp("data") / "tiny.npz")


def test_cli_in_process_matches_library(data_file, reference, tmp_path, capsys):
    status = cli_main(["reproduce", "--dataset", str(data_file), "--seed", "3", "--out", str(tmp_path), "--device", "cpu",
                       "--no-figures", "--quiet", "--bootstrap", "50", "--models", ",".join(TEST_MODELS)])
    assert status == 0
    assert numbers(tmp_path) == numbers(reference[0])
    assert cli_main(["reproduce", "--dataset", str(data_file), "--models", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown model/variant 'nope'" in capsys.readouterr().err


def test_table_command_rebuilds_everything_from_the_files_alone(reference, tmp_path):
    out_ref, _ = reference
    (tmp_path / "results").mkdir()
    for p in (out_ref / "results").glob("*.npz"):
        (tmp_path / "results" / p.name).write_bytes(p.read_bytes())
    assert cli_main(["table", "--out", str(tmp_path), "--no-figures"]) == 0
    assert numbers(tmp_path) == numbers(out_ref)
    assert (tmp_path / "table.md").read_text() == (out_ref / "table.md").read_text()
    assert cli_main(["table", "--out", str(tmp_path / "empty")]) == 2  # nothing there: a clear error


def test_models_and_data_commands(data_file, capsys):
    assert cli_main(["models"]) == 0
    listing = capsys.readouterr().out
    for name in ["etecrm", "etecrm_no_weights", "etecrm_no_noise", "etecrm_corr", "etecrm_mse", "gwp_ridge",
                 "alexnet_ridge", "gwp_roiwise"]:
        assert f"\n{name} " in "\n" + listing
    assert cli_main(["data", "describe", "--dataset", str(data_file)]) == 0
    assert "ROIs (voxels): V1 (25), V2 (15)" in capsys.readouterr().out


def _wait_for_first_file(proc, out, timeout=120):
    start = time.time()
    while time.time() - start < timeout:
        if list((out / "results").glob("*.npz")):
            return
        if proc.poll() is not None:
            raise AssertionError(f"process ended early: {proc.communicate()}")
        time.sleep(0.05)
    raise AssertionError("no results file appeared")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill"])
def test_interrupted_run_resumes_to_the_same_numbers(data_file, reference, tmp_path, sig):
    out = tmp_path / "run"
    env = dict(os.environ, ETECRM_TEST_DELAY="0.4", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cli_command(data_file, out), cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _wait_for_first_file(proc, out)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    finished = sorted(p.name for p in (out / "results").glob("*.npz"))
    assert 1 <= len(finished) < 2 * len(TEST_MODELS), finished
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "run the same command again to resume" in stderr
    else:
        assert proc.returncode == -signal.SIGKILL
    for name in finished:  # whatever is there is complete and valid
        rp.load_result(out / "results" / name)
    kept = {name: (out / "results" / name).stat().st_mtime_ns for name in finished}
    done = subprocess.run(cli_command(data_file, out), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert {n: (out / "results" / n).stat().st_mtime_ns for n in finished} == kept  # finished ones not redone
    assert numbers(out) == numbers(reference[0])
    assert not list((out / "results").glob(".*.part"))


def test_figures_are_written_as_html_and_png_failure_is_a_note(data, reference, tmp_path):
    pytest.importorskip("plotly")
    _, results = reference
    comparisons = rp.compare_to_best_two_step(results, data, reference="test_group_a", n_bootstrap=50)
    notes = rp.write_figures(results, tmp_path, comparisons)
    for stem in ("median_r", "top_n_mean_r", "bootstrap"):
        html = tmp_path / "figures" / f"tiny_quick_sub1_{stem}.html"
        assert html.exists() and "test_group" in html.read_text(), notes
    png = tmp_path / "figures" / "tiny_quick_sub1_median_r.png"
    assert png.exists() or any("PNG export failed" in n for n in notes), notes
    if png.exists():
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figures_are_skipped_with_a_note_without_plotly(reference, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "plotly", None)  # as on a machine without plotly: import fails
    notes = rp.write_figures(reference[1], tmp_path)
    assert len(notes) == 1 and "plotly is not installed" in notes[0]
    assert not (tmp_path / "figures").exists()


def test_dataset_fingerprint_tells_data_apart():
    a, b = tiny_dataset(seed=0), tiny_dataset(seed=1)
    assert rp.dataset_fingerprint(a, "V1") == rp.dataset_fingerprint(tiny_dataset(seed=0), "V1")
    assert rp.dataset_fingerprint(a, "V1") != rp.dataset_fingerprint(b, "V1")
    assert rp.dataset_fingerprint(a, "V1") != rp.dataset_fingerprint(a, "V2")
    # simulated data are identified by their generator's key, not by the last bits of the responses
    a.info["cache_key"] = b.info["cache_key"] = "same-simulation"
    b.train.responses["V1"] = a.train.responses["V1"] + np.float32(1e-6)
    b.test.responses["V1"] = a.test.responses["V1"]
    assert rp.dataset_fingerprint(a, "V1") == rp.dataset_fingerprint(b, "V1")
