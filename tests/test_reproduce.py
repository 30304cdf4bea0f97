"""`etecrm reproduce`: seeds, results files, resume after Ctrl-C / kill, corruption, tables,
comparisons, CLI checks.

Most tests use a tiny made-up dataset (16x16 images) and test-only variants, registered below:
ridge regression on a seeded random projection of the pixels (so a wrong seed changes the numbers),
run per model seed; a deterministic ridge on the raw pixels (run once); and two ridge variants of
the "etecrm" family (``test_group_a`` plays ``etecrm``, ``test_group_b`` its ablation). Each reports
``val_r``, its per-voxel r on the last 20% of the train images when fitted on the rest. The
subprocess tests run the real command line through ``python -c`` so that the test variants are
registered there too.
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

from etecrm_lib import ablations, figures, runs
from etecrm_lib import reproduce as rp
from etecrm_lib import results as result_files
from etecrm_lib.cli import main as cli_main
from etecrm_lib.comparisons import choose_baseline, load_comparisons, save_comparisons, top_n_voxels
from etecrm_lib.data import from_arrays, save_npz
from etecrm_lib.evaluation import EncodingResult, paired_bootstrap, score
from etecrm_lib.tables import load_run

TEST_MODELS = ["test_proj_ridge", "test_fixed_ridge", "test_group_a", "test_group_b"]
REFERENCE = "test_group_a"
SEEDS = [3, 4]
N_FILES = 2 * (len(SEEDS) * 3 + 1)  # 2 ROIs x (3 per-seed models x 2 seeds + 1 deterministic)
TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent


# ----------------------------------------------------------------------------- test-only pieces
def tiny_dataset(seed=0, n_train=80, n_test=20, size=16, n_repeats=4):
    """Images of noise; voxels respond linearly to a few pixels, plus trial noise."""
    rng = np.random.default_rng(seed)
    train, test = (
        rng.random((n_train, size, size), dtype=np.float32),
        rng.random((n_test, size, size), dtype=np.float32),
    )
    responses, repeats, oracle = {}, {}, {}
    for roi, n_vox in (("V1", 25), ("V2", 15)):  # odd: torch.median (bootstrap) = np.median
        w = rng.normal(size=(size * size, n_vox)) * (rng.random((size * size, n_vox)) < 0.05)
        gain = np.linspace(0.0, 1.0, n_vox)  # from ineffective to well-driven voxels
        f_train, f_test = train.reshape(n_train, -1) @ w * gain, test.reshape(n_test, -1) @ w * gain
        responses[roi] = (f_train + rng.normal(size=f_train.shape)).astype(np.float32)
        repeats[roi] = (f_test[None] + rng.normal(size=(n_repeats, *f_test.shape))).astype(
            np.float32
        )
        oracle[roi] = f_test.astype(np.float32)
    return from_arrays(
        train, responses, test, test_repeats=repeats, test_oracle=oracle, name="tiny", subject=1
    )


def _ridge(f, y, alpha):
    eye = torch.eye(f.shape[1], dtype=torch.float64)
    return torch.linalg.solve(f.T @ f + alpha * eye, f.T @ (y - y.mean(0)))


def _proj_ridge(dataset, variant, roi, **settings):
    """Ridge on a random projection of the pixels (raw pixels for ``pixels``), drawn from the model
    seed."""
    delay = float(os.environ.get("ETECRM_TEST_DELAY", "0"))
    x_train = torch.as_tensor(
        dataset.train.stimuli.reshape(dataset.train.n_images, -1), dtype=torch.float64
    )
    x_test = torch.as_tensor(
        dataset.test.stimuli.reshape(dataset.test.n_images, -1), dtype=torch.float64
    )
    proj = torch.randn(x_train.shape[1], 64, dtype=torch.float64)  # seeded by run_variant
    if variant.options.get("pixels"):
        proj = torch.eye(x_train.shape[1], dtype=torch.float64)
    f_train, f_test = x_train @ proj, x_test @ proj
    mu, sd = f_train.mean(0), f_train.std(0)
    f_train, f_test = (f_train - mu) / sd, (f_test - mu) / sd
    y = torch.as_tensor(dataset.train.responses[roi], dtype=torch.float64)
    n_fit = int(0.8 * len(y))
    time.sleep(delay)
    alpha = variant.options["alpha"]
    w = _ridge(f_train, y, alpha)
    train_r = torch.nn.functional.cosine_similarity(
        f_train @ w, y - y.mean(0), dim=0
    )  # an info array
    w_fit = _ridge(f_train[:n_fit], y[:n_fit], alpha)
    val_r = torch.as_tensor(
        np.array(
            [
                np.corrcoef(a, b)[0, 1]
                for a, b in zip((f_train[n_fit:] @ w_fit).T.numpy(), y[n_fit:].T.numpy())
            ]
        )
    )
    return score(
        f_test @ w + y.mean(0),
        dataset,
        roi,
        variant.name,
        info={"config": {"alpha": alpha}, "train_r": train_r, "val_r": val_r},
    )


def register_test_variants():
    for name, family, options in (
        ("test_proj_ridge", "two_step", {"alpha": 10.0}),
        ("test_fixed_ridge", "two_step", {"alpha": 300.0, "fit": "voxelwise", "pixels": True}),
        ("test_group_a", "etecrm", {"alpha": 1.0}),
        ("test_group_b", "etecrm", {"alpha": 100.0}),
    ):
        ablations.register(
            ablations.Variant(
                name,
                family,
                f"test only: ridge (alpha {options['alpha']}) on pixels",
                options,
                _proj_ridge,
            ),
            replace=True,
        )


register_test_variants()

_CLI_SCRIPT = (
    "import sys; sys.path.insert(0, {tests!r}); import test_reproduce; "
    "from etecrm_lib.cli import main; sys.exit(main(sys.argv[1:]))"
)


def cli_command(data_file, out, models=TEST_MODELS):
    return [
        sys.executable,
        "-c",
        _CLI_SCRIPT.format(tests=str(TESTS_DIR)),
        "reproduce",
        "--dataset",
        str(data_file),
        "--profile",
        "quick",
        "--first-seed",
        "3",
        "--seeds",
        "2",
        "--out",
        str(out),
        "--device",
        "cpu",
        "--no-figures",
        "--quiet",
        "--bootstrap",
        "100",
        "--models",
        *models,
    ]


def numbers(out):
    """table.json without the fields that legitimately differ between runs (wall time)."""
    rows = json.loads((Path(out) / "table.json").read_text())
    return [{k: v for k, v in row.items() if k != "wall_time_s"} for row in rows]


def run_quiet(data, out, **kw):
    kw = {
        "models": TEST_MODELS,
        "first_seed": SEEDS[0],
        "n_seeds": len(SEEDS),
        "device": "cpu",
        "figures": False,
        "progress": False,
        "n_bootstrap": 100,
        "reference": REFERENCE,
        "log": lambda *a: None,
    } | kw
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
    path = result_files.result_path(out, "tiny", "quick", 1, res.roi, res.model, 3)
    assert path.exists()
    loaded = result_files.load_result(path)
    np.testing.assert_array_equal(loaded.test_r, res.test_r)
    np.testing.assert_array_equal(loaded.noise_ceiling, res.noise_ceiling)
    assert loaded.predictions.shape == (20, res.n_voxels)
    meta = result_files.read_meta(path)
    info = meta["info"]
    for key in (
        "library_version",
        "git_commit",
        "torch_version",
        "device",
        "wall_time_s",
        "config",
        "seed",
        "options",
    ):
        assert key in info, key
    assert meta["seed"] == 3 and meta["profile"] == "quick" and meta["model"] == res.model
    assert info["config"] == {"alpha": 10.0}
    assert "train_r" not in info and loaded.info["train_r"].shape == (
        res.n_voxels,
    )  # stored as an array
    np.testing.assert_allclose(loaded.info["train_r"], res.info["train_r"], atol=1e-6)
    # predictions are stored as float16 but still agree with the float32 r to ~1e-3
    r16 = np.array(
        [
            np.corrcoef(loaded.predictions[:, v], reference_data_test(loaded.roi)[:, v])[0, 1]
            for v in range(loaded.n_voxels)
        ]
    )
    np.testing.assert_allclose(r16, loaded.test_r, atol=5e-3)


def reference_data_test(roi):
    return tiny_dataset().test.responses[roi]


def test_saved_r_matches_an_independent_recomputation(data, reference):
    """test_r in the files is Pearson r of the test predictions (checked against numpy)."""
    _, results = reference
    for res in results:
        measured = data.test.responses[res.roi]
        expected = [
            np.corrcoef(res.predictions[:, v], measured[:, v])[0, 1] for v in range(res.n_voxels)
        ]
        np.testing.assert_allclose(res.test_r, expected, atol=5e-3)


def test_seed_files_one_per_seed_and_one_for_a_deterministic_model(reference):
    out, results = reference
    names = sorted(p.name for p in (out / "results").glob("*.npz"))
    assert len(names) == len(results) == N_FILES
    for roi in ("V1", "V2"):
        for model in ("test_proj_ridge", "test_group_a", "test_group_b"):
            for seed in SEEDS:
                assert (
                    result_files.result_path(out, "tiny", "quick", 1, roi, model, seed).name
                    in names
                )
        assert (
            result_files.result_path(out, "tiny", "quick", 1, roi, "test_fixed_ridge", 0).name
            in names
        )
        assert result_files.read_meta(
            result_files.result_path(out, "tiny", "quick", 1, roi, "test_fixed_ridge", 0)
        )["deterministic"]
    by_seed = {r.info["seed"]: r for r in results if r.model == "test_proj_ridge" and r.roi == "V1"}
    assert sorted(by_seed) == SEEDS and not np.allclose(by_seed[3].test_r, by_seed[4].test_r)


def test_seed_table_gives_mean_and_sd_over_seeds_and_ensembles(data, reference):
    out, results = reference
    rows = json.loads((out / "table.json").read_text())
    seed_rows = {(r["roi"], r["model"]): r for r in rows if r["kind"] == "seeds"}
    assert len(seed_rows) == 2 * len(TEST_MODELS)
    for (roi, model), row in seed_rows.items():
        runs = [r for r in results if (r.roi, r.model) == (roi, model)]
        medians = [float(np.median(r.test_r)) for r in runs]
        # top 300 by validation r (all 25 voxels here), never by test r
        tops = [float(r.test_r[np.argsort(-r.info["val_r"])[:300]].mean()) for r in runs]
        assert row["n_seeds"] == len(runs) == (1 if model == "test_fixed_ridge" else 2)
        assert row["median_r"] == pytest.approx(np.mean(medians), abs=1e-7)
        assert row["top300_val_mean_r"] == pytest.approx(np.mean(tops), abs=1e-7)
        if len(runs) > 1:
            assert row["median_r_sd"] == pytest.approx(np.std(medians, ddof=1), abs=1e-7)
            assert row["seeds"] == "3-4"
        else:
            assert row["median_r_sd"] is None and row["seeds"] == "0" and row["deterministic"]
    ensembles = {(r["roi"], r["model"]): r for r in rows if r["kind"] == "ensemble"}
    assert set(ensembles) == {k for k in seed_rows if k[1] != "test_fixed_ridge"}
    for (
        (roi, model),
        row,
    ) in ensembles.items():  # independent: average the standardized stored predictions, numpy r
        stored = [
            result_files.load_result(
                result_files.result_path(out, "tiny", "quick", 1, roi, model, s)
            )
            for s in SEEDS
        ]
        z = [(p - p.mean(0)) / p.std(0) for p in (r.predictions.astype(np.float64) for r in stored)]
        mean = np.mean(z, axis=0)
        measured = data.test.responses[roi]
        r = [np.corrcoef(mean[:, v], measured[:, v])[0, 1] for v in range(mean.shape[1])]
        assert row["median_r"] == pytest.approx(np.median(r), abs=1e-5) and row["n_seeds"] == 2
    per_seed = json.loads((out / "table_per_seed.json").read_text())
    assert len(per_seed) == N_FILES and {r["seed"] for r in per_seed} == {0, 3, 4}
    md, csv_text = (out / "table.md").read_text(), (out / "table.csv").read_text()
    assert "| V1 | test_group_a | 3-4 | 25 |" in md and "test_group_a (ensemble of seeds 3-4)" in md
    assert " ± " in md and md.count("\n| V") == len(rows)
    assert "| V1 | test_fixed_ridge | 0 (deterministic) | 25 |" in md
    assert csv_text.splitlines()[0].startswith(
        "dataset,data_seed,profile,subject,roi,model,kind,n_seeds,seeds"
    )


def test_each_model_starts_from_the_seed(data, reference):
    """A model's numbers do not depend on what ran before it: run alone, later, it agrees."""
    _, results = reference
    alone = ablations.run_variants(
        data, ["test_group_b"], rois=["V2"], seed=3, device="cpu", progress=False
    )[0]
    together = next(r for r in results if r.model == "test_group_b" and r.roi == "V2")
    np.testing.assert_allclose(alone.test_r, together.test_r, atol=1e-6)


def test_second_run_skips_everything(data, reference, tmp_path):
    out, _ = reference
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "results").glob("*.npz")}
    calls = []
    original = ablations.run_variant
    ablations.run_variant = lambda *a, **k: calls.append(a) or original(*a, **k)
    try:
        again = run_quiet(data, out)
    finally:
        ablations.run_variant = original
    assert calls == []
    assert {p: p.stat().st_mtime_ns for p in (out / "results").glob("*.npz")} == mtimes
    assert [r.model for r in again] == [r.model for r in reference[1]]


def test_other_seed_gives_other_numbers_and_other_files(data, reference, tmp_path):
    results = run_quiet(
        data, tmp_path, first_seed=5, n_seeds=1, models=["test_proj_ridge"], rois=["V1"]
    )
    ref = next(r for r in reference[1] if r.model == "test_proj_ridge" and r.roi == "V1")
    assert not np.allclose(results[0].test_r, ref.test_r)
    assert (tmp_path / "results" / "tiny_quick_sub1_V1_test_proj_ridge_seed5.npz").exists()


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
        np.savez_compressed(
            f, meta=np.array(raw_meta if raw_meta is not None else json.dumps(meta)), **arrays
        )


def _set_bad_shape(arrays):
    arrays["test_r"] = arrays["test_r"][:-1]


def _drop_last_voxel(path):
    """A self-consistent file (shapes, checksums) for one voxel fewer than the dataset has."""
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("meta")))
    arrays = {k: np.ascontiguousarray(a[..., :-1]) for k, a in arrays.items()}
    meta["n_voxels"] -= 1
    meta["arrays"] = {
        k: {"shape": list(a.shape), "dtype": str(a.dtype), "sha256": result_files.array_sha256(a)}
        for k, a in arrays.items()
    }
    with open(path, "wb") as f:
        np.savez_compressed(f, meta=np.array(json.dumps(meta)), **arrays)
    result_files.load_result(
        path
    )  # readable on its own: only the comparison with the dataset can tell


CORRUPTIONS = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "empty": lambda p: p.write_bytes(b""),
    "bad_json": lambda p: _rewrite(p, raw_meta='{"format": 1, "roi": '),
    "checksum": lambda p: _rewrite(
        p, array_edit=lambda a: a.__setitem__("test_r", a["test_r"] + np.float32(0.01))
    ),
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
    if kind in ("consistent_but_fewer_voxels", "other_data"):  # verifies: never overwritten
        damaged = victim.read_bytes()
        with pytest.raises(result_files.OtherInputsError, match="refusing to overwrite"):
            run_quiet(data, out)
        assert victim.read_bytes() == damaged
        return
    with pytest.raises(result_files.CorruptResultError):
        result_files.load_result(victim)
    messages = []
    run_quiet(data, out, log=messages.append)
    assert any("recomputing" in m and victim.name in m for m in messages), messages
    assert result_files.load_result(victim).n_voxels == 15
    assert numbers(out) == numbers(out_ref)


def test_comparisons_baseline_by_validation_and_ablations(data, reference):
    out, results = reference
    records = json.loads((out / "comparisons.json").read_text())
    assert {(c["roi"], c["kind"], c["statistic"]) for c in records} == {
        (roi, kind, stat)
        for roi in ("V1", "V2")
        for kind in ("baseline", "ablation")
        for stat in ("median_r", "top_n_mean_r")
    }
    for c in records:
        runs = [r for r in results if r.roi == c["roi"]]
        if c["kind"] == "baseline":
            val = {
                m: np.mean([np.median(r.info["val_r"]) for r in runs if r.model == m])
                for m in ("test_proj_ridge", "test_fixed_ridge")
            }
            assert c["model_a"] == REFERENCE and c["model_b"] == max(val, key=val.get)
            assert (
                c["baseline_val_median_r"] == pytest.approx(val, abs=1e-6)
                and "test data not used" in c["baseline_rule"]
            )
        else:
            assert (c["model_a"], c["model_b"]) == ("test_group_b", REFERENCE)
        assert (
            c["seeds_a"] == SEEDS
            and c["n_seeds_a"] == 2
            and c["dataset"] == "tiny"
            and c["data_seed"] is None
        )
        if c["statistic"] == "median_r":  # the observed difference: mean over seeds of the median r
            mean_median = lambda m: np.mean([np.median(r.test_r) for r in runs if r.model == m])  # noqa: E731
            assert c["difference"] == pytest.approx(
                mean_median(c["model_a"]) - mean_median(c["model_b"]), abs=1e-3
            )
        if c["statistic"] == "top_n_mean_r":  # scored on voxels chosen by validation r, not test r
            assert (
                "validation r" in c["top_n_selection"]
                and "test data not used" in c["top_n_selection"]
            )
            side = lambda m: [r for r in runs if r.model == m]  # noqa: E731
            voxels = top_n_voxels(side(c["model_a"]), side(c["model_b"]))
            mean_on = lambda m: np.mean([r.test_r[voxels].mean() for r in side(m)])  # noqa: E731
            assert c["difference"] == pytest.approx(
                mean_on(c["model_a"]) - mean_on(c["model_b"]), abs=1e-3
            )
        assert c["ci_low"] <= c["difference"] <= c["ci_high"]


def test_baseline_choice_never_reads_the_test_split(data, reference, tmp_path):
    """Same training data, garbage test responses: the same baseline, though test r would now pick
    the other one."""
    _, results = reference
    chosen = choose_baseline(results, "V1")
    other = next(m for m in ("test_proj_ridge", "test_fixed_ridge") if m != chosen.model)
    loser = next(r for r in results if r.roi == "V1" and r.model == other)
    rng = np.random.default_rng(0)
    garbage = {
        roi: rng.normal(size=data.test.responses[roi].shape).astype(np.float32) for roi in data.rois
    }
    garbage["V1"] = (
        loser.predictions + 0.01 * garbage["V1"]
    )  # test responses that favour the other model
    bad = from_arrays(
        data.train.stimuli, data.train.responses, data.test.stimuli, garbage, name="tiny", subject=1
    )
    rerun = run_quiet(bad, tmp_path, rois=["V1"])
    by_test_r = max(
        ("test_proj_ridge", "test_fixed_ridge"),
        key=lambda m: np.mean([np.median(r.test_r) for r in rerun if r.model == m]),
    )
    assert by_test_r == other  # a selector that peeked at the test split would switch
    assert choose_baseline(rerun, "V1").model == chosen.model
    assert choose_baseline(rerun, "V1").val_median_r == pytest.approx(chosen.val_median_r, abs=1e-6)
    c = next(c for c in load_comparisons(tmp_path) if c["kind"] == "baseline")
    assert c["model_b"] == chosen.model


def test_rerun_with_fewer_models_or_other_seeds_keeps_earlier_comparisons(data, tmp_path):
    run_quiet(data, tmp_path)
    first = json.loads((tmp_path / "comparisons.json").read_text())
    assert len(first) == 8
    run_quiet(data, tmp_path, models=["test_proj_ridge"])  # no reference: no comparison
    run_quiet(
        data, tmp_path, models=[REFERENCE, "test_group_b"], rois=["V2"]
    )  # fewer models and ROIs
    assert json.loads((tmp_path / "comparisons.json").read_text()) == first
    run_quiet(data, tmp_path, first_seed=3, n_seeds=1)  # another seed set: added
    after = json.loads((tmp_path / "comparisons.json").read_text())
    assert len(after) == 16 and all(c in after for c in first)
    assert len(list((tmp_path / "comparisons").glob("*.json"))) == 4
    assert json.loads((tmp_path / "table.json").read_text())  # table over all seeds still there


def test_stripped_predictions_keep_scores_tables_and_comparisons(data, tmp_path):
    """Committed results hold no predictions: every score survives, and a rerun keeps what was
    computed."""
    from etecrm_lib.results import strip_predictions

    before = run_quiet(data, tmp_path)
    table, comparisons = numbers(tmp_path), (tmp_path / "comparisons.json").read_text()
    n_files = len(list(tmp_path.glob("*/*.npz")))
    assert strip_predictions(tmp_path) == n_files and strip_predictions(tmp_path) == 0
    after = run_quiet(data, tmp_path)  # everything finished: nothing retrained or recomputed
    assert all(r.predictions is None for r in after)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a.test_r, b.test_r)
    assert numbers(tmp_path) == table and (tmp_path / "comparisons.json").read_text() == comparisons
    assert cli_main(["table", "--out", str(tmp_path), "--no-figures"]) == 0


def test_save_comparisons_merges_by_roi_and_statistic(tmp_path):
    base = {
        "dataset": "sim",
        "data_seed": 0,
        "profile": "full",
        "subject": 1,
        "model_a": "etecrm",
        "model_b": "gwp_ridge",
        "seeds_a": [0, 1, 2],
        "seeds_b": [0],
        "statistic": "median_r",
    }
    save_comparisons(
        tmp_path, [base | {"roi": "V1", "difference": 0.1}, base | {"roi": "V2", "difference": 0.2}]
    )
    save_comparisons(tmp_path, [base | {"roi": "V1", "difference": 0.3}])  # recomputed: replaced
    save_comparisons(
        tmp_path, [base | {"roi": "V1", "subject": 2, "difference": 0.4}]
    )  # another subject
    save_comparisons(
        tmp_path, [base | {"roi": "V1", "data_seed": 1, "difference": 0.5}]
    )  # another simulation
    got = {
        (c["subject"], c["data_seed"], c["roi"]): c["difference"]
        for c in load_comparisons(tmp_path)
    }
    assert got == {(1, 0, "V1"): 0.3, (1, 0, "V2"): 0.2, (2, 0, "V1"): 0.4, (1, 1, "V1"): 0.5}
    names = sorted(p.name for p in (tmp_path / "comparisons").glob("*.json"))
    assert (
        "sim-data0_full_sub1_etecrm_seeds0-2_vs_gwp_ridge_seeds0.json" in names and len(names) == 3
    )


def test_load_result_checks_expectations(reference):
    out, results = reference
    path = result_files.result_path(out, "tiny", "quick", 1, "V1", "test_proj_ridge", 3)
    result_files.load_result(path, {"roi": "V1", "n_voxels": 25})
    with pytest.raises(result_files.OtherInputsError, match="n_voxels"):
        result_files.load_result(path, {"n_voxels": 26})


def test_partial_temp_files_are_cleaned(data, reference, tmp_path):
    out = tmp_path
    (out / "results").mkdir()
    stale = out / "results" / ".tiny_quick_sub1_V1_test_proj_ridge_seed3.npz.abc.part"
    stale.write_bytes(b"half a file")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))  # left by a killed run
    other = (
        out / "results" / ".tiny_quick_sub2_V1_test_proj_ridge_seed3.npz.xyz.part"
    )  # another subject's run
    other.write_bytes(b"being written")
    run_quiet(data, out, models=["test_proj_ridge"], rois=["V1"])
    assert not stale.exists() and other.exists()


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
    status = cli_main(
        [
            "reproduce",
            "--dataset",
            str(data_file),
            "--first-seed",
            "3",
            "--seeds",
            "2",
            "--out",
            str(tmp_path),
            "--device",
            "cpu",
            "--no-figures",
            "--quiet",
            "--bootstrap",
            "100",
            "--models",
            ",".join(TEST_MODELS),
        ]
    )
    assert status == 0
    assert numbers(tmp_path) == numbers(reference[0])
    assert (
        cli_main(
            ["reproduce", "--dataset", str(data_file), "--models", "nope", "--out", str(tmp_path)]
        )
        == 2
    )
    assert "unknown model/variant 'nope'" in capsys.readouterr().err


def test_table_command_rebuilds_everything_from_the_files_alone(reference, tmp_path):
    out_ref, _ = reference
    for folder in ("results", "ensembles", "comparisons"):
        (tmp_path / folder).mkdir()
        for p in (out_ref / folder).glob("*.*"):
            (tmp_path / folder / p.name).write_bytes(p.read_bytes())
    assert cli_main(["table", "--out", str(tmp_path), "--no-figures"]) == 0
    assert numbers(tmp_path) == numbers(out_ref)
    assert (tmp_path / "table.md").read_text() == (out_ref / "table.md").read_text()
    assert (tmp_path / "comparisons.json").read_text() == (out_ref / "comparisons.json").read_text()
    assert (
        cli_main(["table", "--out", str(tmp_path / "empty")]) == 2
    )  # nothing there: a clear error


def test_models_and_data_commands(data_file, capsys):
    assert cli_main(["models"]) == 0
    listing = capsys.readouterr().out
    for name in ablations.VARIANTS:
        assert f"\n{name} " in "\n" + listing
    assert "[two_step, once (deterministic)]" in listing and "[etecrm, per seed]" in listing
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
    proc = subprocess.Popen(
        cli_command(data_file, out),
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_first_file(proc, out)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    finished = sorted(p.name for p in (out / "results").glob("*.npz"))
    assert 1 <= len(finished) < N_FILES, finished
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "run the same command again to resume" in stderr
    else:
        assert proc.returncode == -signal.SIGKILL
    for name in finished:  # whatever is there is complete and valid
        result_files.load_result(out / "results" / name)
    kept = {name: (out / "results" / name).stat().st_mtime_ns for name in finished}
    done = subprocess.run(
        cli_command(data_file, out), cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert {
        n: (out / "results" / n).stat().st_mtime_ns for n in finished
    } == kept  # finished ones not redone
    assert numbers(out) == numbers(reference[0])
    assert not list((out / "results").glob(".*.part"))


def test_figures_are_written_as_html_and_png_failure_is_a_note(reference, tmp_path):
    pytest.importorskip("plotly")
    out, _ = reference
    run = load_run(out, dataset="tiny", profile="quick", subject=1, data_seed=None)
    notes = figures.write_figures(run.rows, tmp_path, run.comparisons)
    for stem in ("median_r", "top300_val_mean_r", "bootstrap_baseline", "bootstrap_ablation"):
        html = tmp_path / "figures" / f"tiny_quick_sub1_{stem}.html"
        assert html.exists() and "test_group" in html.read_text(), notes
    png = tmp_path / "figures" / "tiny_quick_sub1_median_r.png"
    assert png.exists() or any("PNG export failed" in n for n in notes), notes
    if png.exists():
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figures_are_skipped_with_a_note_without_plotly(reference, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "plotly", None)  # as on a machine without plotly: import fails
    notes = figures.write_figures([], tmp_path)
    assert len(notes) == 1 and "plotly is not installed" in notes[0]
    assert not (tmp_path / "figures").exists()


def test_dataset_fingerprint_tells_data_apart():
    a, b = tiny_dataset(seed=0), tiny_dataset(seed=1)
    assert runs.dataset_fingerprint(a, "V1") == runs.dataset_fingerprint(tiny_dataset(seed=0), "V1")
    assert runs.dataset_fingerprint(a, "V1") != runs.dataset_fingerprint(b, "V1")
    assert runs.dataset_fingerprint(a, "V1") != runs.dataset_fingerprint(a, "V2")
    # simulated data are identified by their generator's key, not by the last bits of the responses
    a.info["cache_key"] = b.info["cache_key"] = "same-simulation"
    b.train.responses["V1"] = a.train.responses["V1"] + np.float32(1e-6)
    b.test.responses["V1"] = a.test.responses["V1"]
    assert runs.dataset_fingerprint(a, "V1") == runs.dataset_fingerprint(b, "V1")


# --------------------------------------------------------------------- data seed, loader, DataFrame
def test_data_seed_is_in_every_file_name_and_must_match(tmp_path):
    sim_like = tiny_dataset()
    sim_like.info.update(generator_version=1, seed=2, cache_key="tiny-simulation-seed-2")
    run_quiet(sim_like, tmp_path, models=["test_fixed_ridge"], rois=["V1"])
    path = tmp_path / "results" / "tiny-data2_quick_sub1_V1_test_fixed_ridge_seed0.npz"
    assert path.exists() and result_files.read_meta(path)["data_seed"] == 2
    assert load_run(tmp_path, "tiny", "quick", 1, data_seed=2).results[0].info["data_seed"] == 2
    with pytest.raises(FileNotFoundError, match="simulation seed 0"):
        load_run(tmp_path, "tiny", "quick", 1, simulation_seed=0)
    with pytest.raises(ValueError, match="simulated with seed 2"):
        run_quiet(sim_like, tmp_path, models=["test_fixed_ridge"], rois=["V1"], data_seed=5)


def test_load_run_and_seed_table_dataframe(reference):
    out, results = reference
    run = load_run(out, dataset="tiny", profile="quick", subject=1, data_seed=None)
    assert (
        len(run.results) == len(results) and len(run.ensembles) == 6 and len(run.comparisons) == 8
    )
    table = run.table()
    assert list(table.columns) == [
        "n_seeds",
        "seeds",
        "median_r",
        "median_r_floor",
        "top300_val_mean_r",
        "top300_val_mean_r_floor",
    ]
    row = next(
        r for r in run.rows if (r["roi"], r["model"], r["kind"]) == ("V1", REFERENCE, "seeds")
    )
    assert (
        table.loc[(1, "V1", REFERENCE), "median_r"]
        == f"{row['median_r']:.3f} ± {row['median_r_sd']:.3f}"
    )
    assert (1, "V1", f"{REFERENCE} (ensemble of seeds 3-4)") in table.index
    numeric = run.table(numeric=True)
    assert numeric.loc[(1, "V1", REFERENCE), "median_r_sd"] == pytest.approx(row["median_r_sd"])
    assert "<table" in table.to_html()
    assert {c.model_b for c in run.comparison_objects("ablation")} == {REFERENCE}


# ----------------------------------------------------------------------------- bootstrap over seeds
def _seed_results(rng, quality, n_test=40, n_vox=31):
    """Results of one model with several seeds: predictions = signal * quality + noise."""
    y = rng.normal(size=(n_test, n_vox))
    out = []
    for q in quality:
        pred = q * y + rng.normal(size=y.shape)
        out.append(
            EncodingResult(
                "m", "V1", "x", 1, np.zeros(n_vox, np.float32), predictions=pred.astype(np.float32)
            )
        )
    return y, out


def test_bootstrap_over_seeds_reduces_to_images_with_one_seed_and_ignores_copies():
    rng = np.random.default_rng(0)
    y, (a, b) = _seed_results(rng, [1.0, 0.5])
    single = paired_bootstrap(a, b, y, n_bootstrap=300)
    assert vars(paired_bootstrap([a], [b], y, n_bootstrap=300)) == vars(single)
    copies = paired_bootstrap(
        [a, a, a], [b, b], y, n_bootstrap=300
    )  # identical seeds: nothing to resample
    assert (copies.difference, copies.ci_low, copies.ci_high) == pytest.approx(
        (single.difference, single.ci_low, single.ci_high)
    )
    assert (copies.n_seeds_a, copies.n_seeds_b) == (3, 2) and "seeds, 3 vs 2" in str(copies)


def test_bootstrap_over_seeds_observed_difference_and_wider_interval():
    rng = np.random.default_rng(1)
    y, runs = _seed_results(rng, [0.2, 0.6, 1.0, 1.4])  # seeds of very different quality
    _, base = _seed_results(np.random.default_rng(2), [0.8])
    base = [
        EncodingResult(
            "b",
            "V1",
            "x",
            1,
            r.test_r,
            predictions=(0.8 * y + rng.normal(size=y.shape)).astype(np.float32),
        )
        for r in base
    ]
    cmp = paired_bootstrap(runs, base, y, statistic="median_r", n_bootstrap=1000)
    per_seed = [
        np.median([np.corrcoef(r.predictions[:, v], y[:, v])[0, 1] for v in range(y.shape[1])])
        for r in runs
    ]
    b_med = np.median(
        [np.corrcoef(base[0].predictions[:, v], y[:, v])[0, 1] for v in range(y.shape[1])]
    )
    assert cmp.difference == pytest.approx(np.mean(per_seed) - b_med, abs=1e-6)
    # the same comparison with the seed luck removed (one fixed seed of average quality) has a
    # narrower interval
    fixed = paired_bootstrap(runs[1], base, y, statistic="median_r", n_bootstrap=1000)
    assert cmp.ci_high - cmp.ci_low > 1.2 * (fixed.ci_high - fixed.ci_low)
    assert cmp.ci_low <= cmp.difference <= cmp.ci_high
    with pytest.raises(ValueError, match="cannot compare ROIs"):
        paired_bootstrap(
            runs,
            [EncodingResult("b", "V2", "x", 1, base[0].test_r, predictions=base[0].predictions)],
            y,
        )


# --------------------------------------------------------------------------- checks before any work
@pytest.mark.parametrize(
    "args, message",
    [
        (["--out", "FILE"], "--out must be a folder, but it is a file"),
        (["--bootstrap", "99"], "--bootstrap must be at least 100"),
        (["--seeds", "0"], "--seeds must be at least 1"),
        (["--first-seed", "-1"], "seeds must be from 0 to 2147483647"),
        (
            ["--dataset", "kay", "--data-seed", "1"],
            "--simulation-seed is the seed of the simulated cortex",
        ),
        (["--device", "cuda"], "asks for a GPU, but torch sees"),
    ],
    ids=[
        "out-is-a-file",
        "bootstrap",
        "seeds",
        "first-seed",
        "data-seed-real-data",
        "cuda-without-gpu",
    ],
)
def test_cli_refuses_bad_settings_before_any_work(tmp_path, capsys, monkeypatch, args, message):
    if "cuda" in args:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    afile = tmp_path / "a_file.txt"
    afile.write_text("not a folder")
    args = [str(afile) if a == "FILE" else a for a in args]
    loaded = []
    monkeypatch.setattr(
        rp, "open_dataset", lambda *a, **k: loaded.append(a)
    )  # would be the first piece of work
    out = [] if "--out" in args else ["--out", str(tmp_path / "out")]
    assert (
        cli_main(
            ["reproduce", "--dataset", "sim", *out, *args]
            if "--dataset" not in args
            else ["reproduce", *out, *args]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert message in err and "given:" in err, err
    assert loaded == [] and not (tmp_path / "out").exists()
