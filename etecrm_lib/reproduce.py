"""One command reproduces the comparison: every model on every ROI with several model seeds,
resumable.

:func:`reproduce` runs the models and ablations of :mod:`etecrm_lib.ablations` on every ROI of one
subject, for the model seeds ``first_seed .. first_seed + n_seeds - 1``, and writes **one results
file per (dataset, data seed, profile, subject, ROI, model, seed)** as soon as it is done
(:mod:`etecrm_lib.results` describes the files and the folder layout). A second run with the same
arguments reads the finished files instead of training again, so a run that was interrupted
(Ctrl-C) or killed loses at most the model in progress. Deterministic models (:func:`model_seeds`)
are run once, as seed 0.

At the end, with the data still at hand, it writes the seed ensembles (predictions averaged over
seeds, then scored on the test split), the bootstrap comparisons over test images and seeds
(:mod:`etecrm_lib.comparisons`: ``etecrm`` vs the two-step baseline chosen on validation data, each
ETECRM ablation vs ``etecrm``), then the tables and figures over everything in the folder
(:func:`rebuild_outputs`, also ``etecrm table``).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import tqdm.auto

from . import __version__, ablations, gpu
from .comparisons import REFERENCE, compare_run, load_comparisons, save_comparisons
from .data.registry import open_dataset
from .device import describe_device, get_device
from .evaluation import score
from .resampling import MIN_BOOTSTRAP
from .results import (
    MAX_SEED,
    CorruptResultError,
    collect_results,
    dataset_tag,
    ensemble_path,
    jsonable,
    load_result,
    result_path,
    save_result,
)
from .storage import atomic_write, remove_stale_parts
from .tables import seed_rows, write_figures, write_tables

DEFAULT_SEEDS = {"quick": 3, "full": 5}
DETERMINISTIC_SEED = 0


# --------------------------------------------------------------------------- provenance
def git_commit() -> str | None:
    """The commit of the checkout this library runs from (``+dirty`` if files changed), or None.

    Outside a git checkout (a copy of the files on another machine) ``$ETECRM_GIT_COMMIT`` is used.
    """
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("ETECRM_GIT_COMMIT") or None
    return commit + ("+dirty" if dirty else "") if commit else None


def provenance() -> dict:
    """What produced a result: library version, git commit, torch and Python versions, host."""
    return {
        "library_version": __version__,
        "git_commit": git_commit(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "host": platform.node(),
    }


def dataset_fingerprint(dataset, roi: str) -> str:
    """SHA-256 (first 16 hex digits) that identifies one ROI's data, stored in every results file.

    Real data: a hash of the ROI's train and test responses and the stimulus shapes. Simulated data
    carry ``info["cache_key"]``, the hash of everything the simulation depends on (its seed too);
    that is used instead, because regenerating the simulation on another GPU can change the last
    bits of the responses. A file computed on other data does not match and is recomputed.
    """
    h = hashlib.sha256()
    h.update(
        repr(
            (
                dataset.name,
                dataset.subject,
                roi,
                dataset.n_voxels(roi),
                dataset.train.stimuli.shape,
                dataset.test.stimuli.shape,
            )
        ).encode()
    )
    if dataset.info.get("cache_key"):
        h.update(str(dataset.info["cache_key"]).encode())
    else:
        for arr in (dataset.train.responses[roi], dataset.test.responses[roi]):
            h.update(np.ascontiguousarray(arr, dtype=np.float32).tobytes())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- checks and choices
def _fail(what: str, given, todo: str):
    raise ValueError(f"{what} (given: {given!r}); {todo}")


def check_settings(
    out,
    device=None,
    n_bootstrap: int = 2000,
    n_seeds: int | None = None,
    first_seed: int = 0,
    data_seed: int | None = None,
    dataset="sim",
) -> None:
    """Refuse bad settings before any work starts: a ValueError says what is wrong, what was given
    and what to do."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        _fail(
            "--out must be a folder, but it is a file",
            str(out),
            "give a folder name (it is created if missing)",
        )
    parent = next((p for p in (out, *out.parents) if p.exists()), Path("."))
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        _fail(
            f"--out cannot be created: {parent} is not a writable folder",
            str(out),
            "choose a folder you can write to",
        )
    if device is not None:
        try:
            get_device(device)
        except ValueError as err:  # mps, meta, a typo, or a GPU this machine lacks
            _fail(f"--{err}", device, "use --device cpu or cuda, or leave --device out")
    if int(n_bootstrap) < MIN_BOOTSTRAP:
        _fail(
            f"--bootstrap must be at least {MIN_BOOTSTRAP} resamples for a 95% interval",
            n_bootstrap,
            "use the default 2000 (or at least 1000 for numbers you report)",
        )
    if n_seeds is not None and int(n_seeds) < 1:
        _fail(
            "--seeds must be at least 1 model seed",
            n_seeds,
            "use the default (5 on full, 3 on quick)",
        )
    last_seed = int(first_seed) + int(n_seeds or 1) - 1
    if not 0 <= int(first_seed) <= last_seed <= MAX_SEED or not 0 <= (data_seed or 0) <= MAX_SEED:
        _fail(
            f"seeds must be from 0 to {MAX_SEED} (2**31 - 1)",
            {"first_seed": first_seed, "n_seeds": n_seeds, "data_seed": data_seed},
            "give smaller seeds",
        )
    name = str(dataset) if isinstance(dataset, (str, Path)) else None
    if data_seed is not None and name is not None and name != "sim" and not name.endswith(".npz"):
        _fail(
            "--data-seed is the seed of the simulated cortex; it means nothing for a real dataset",
            name,
            "leave --data-seed out, or use --dataset sim",
        )


def model_seeds(model: str, seeds, cnn_weights=None) -> list:
    """The seeds ``model`` is run with: all of ``seeds``, or ``[0]`` for a deterministic model
    (:func:`is_deterministic`)."""
    return [DETERMINISTIC_SEED] if is_deterministic(model, cnn_weights) else list(seeds)


def is_deterministic(model: str, cnn_weights=None) -> bool:
    """True when the model's seed changes nothing, so it is run once (as seed 0).

    Deterministic (nothing random between data and predictions, so another seed would give the same
    file again): the voxel-wise ridge models (``gwp_ridge``; ``alexnet_ridge`` with given CNN
    weights). A variant may also say so itself with a ``deterministic`` attribute. Models with
    random parts (every ETECRM variant, ``gwp_roiwise``, an untrained ``alexnet_ridge``) run per
    seed.
    """
    variant = ablations.get_variant(model)
    deterministic = getattr(variant, "deterministic", None)
    if deterministic is None:
        options = variant.options
        deterministic = (
            variant.family == "two_step"
            and options.get("fit") == "voxelwise"
            and (options.get("features") != "alexnet" or cnn_weights is not None)
        )
    return bool(deterministic)


def _data_seed(data, requested: int | None) -> int | None:
    """The simulation seed the data were made with (None for real data); an error if it is not
    ``requested``."""
    seed = data.info.get("seed") if data.info.get("generator_version") is not None else None
    if requested is not None and seed != requested:
        _fail(
            f"the dataset was simulated with seed {seed}, not the data seed asked for",
            requested,
            "leave --data-seed out for a saved dataset, or simulate it again with that seed",
        )
    return seed


def _weights_expectation(model: str, cnn_weights) -> dict:
    """What a results file must record about the CNN weights: only models built on CNN features
    care."""
    if ablations.get_variant(model).options.get("features") == "alexnet":
        return {"cnn_weights": jsonable(cnn_weights if cnn_weights is None else str(cnn_weights))}
    return {}


def _clean_partial_files(out: Path, prefix: str) -> int:
    """Delete temp files a killed run left (``.<prefix>*.part``, untouched for an hour:
    ``storage.remove_stale_parts``); a run in progress keeps its own. Returns how many."""
    return sum(remove_stale_parts(out / folder, prefix) for folder in ("results", "ensembles"))


# --------------------------------------------------------------------------- the run
@dataclass
class _Job:
    """What every step of one run needs."""

    out: Path
    data: object
    profile: str
    data_seed: int | None
    device: object
    cnn_weights: object
    provenance: dict
    progress: bool
    log: object

    def path(self, roi, model, seed) -> Path:
        return result_path(
            self.out,
            self.data.name,
            self.profile,
            self.data.subject,
            roi,
            model,
            seed,
            self.data_seed,
        )

    def expect(self, roi, model, seed) -> dict:
        return {
            "dataset": self.data.name,
            "data_seed": self.data_seed,
            "subject": self.data.subject,
            "roi": roi,
            "profile": self.profile,
            "seed": seed,
            "model": model,
            "n_voxels": self.data.n_voxels(roi),
            "dataset_fingerprint": dataset_fingerprint(self.data, roi),
            **_weights_expectation(model, self.cnn_weights),
        }


def _finished(job: _Job, roi: str, model: str, seed: int):
    """The result of ``model`` already on disk and valid, or None (missing or corrupt:
    recompute)."""
    try:
        return load_result(job.path(roi, model, seed), job.expect(roi, model, seed))
    except FileNotFoundError:
        return None
    except CorruptResultError as err:
        job.log(f"results file {err}; recomputing it")
        return None


def _train(job: _Job, roi: str, model: str, seed: int, deterministic: bool):
    """Fit and score one model for one seed, write its results file, and read it back (verified)."""
    extra = {
        "data_seed": job.data_seed,
        "dataset_fingerprint": dataset_fingerprint(job.data, roi),
        "deterministic": deterministic,
        "cnn_weights": jsonable(job.cnn_weights),
    }
    res = ablations.run_variant(
        job.data,
        model,
        roi,
        profile=job.profile,
        seed=seed,
        device=job.device,
        progress=job.progress,
        cnn_weights=job.cnn_weights,
    )
    res.info.update(job.provenance)
    save_result(res, job.path(roi, model, seed), profile=job.profile, seed=seed, extra=extra)
    return load_result(job.path(roi, model, seed), job.expect(roi, model, seed))


def _standardized(predictions) -> np.ndarray:
    """``(N, V)`` predictions with mean 0 and s.d. 1 per voxel (a constant voxel stays 0),
    float64."""
    p = np.asarray(predictions, dtype=np.float64)
    p = p - p.mean(axis=0)
    sd = p.std(axis=0)
    return np.divide(p, sd, out=np.zeros_like(p), where=sd > 0)


def _write_ensembles(job: _Job, by_model: dict) -> list:
    """Average the stored predictions of every model with >= 2 seeds, score on the test split, save.

    Each seed's predictions are first standardized per voxel (over the test images: its own mean and
    s.d., no test responses involved): a correlation-trained network predicts in arbitrary units,
    and averaging raw predictions would let the seed with the largest scale decide."""
    written = []
    for (roi, model), runs in by_model.items():
        if len(runs) < 2:
            continue
        seeds = [r.info["seed"] for r in runs]
        path = ensemble_path(
            job.out, job.data.name, job.profile, job.data.subject, roi, model, seeds, job.data_seed
        )
        expect = {"seeds": seeds, "dataset_fingerprint": dataset_fingerprint(job.data, roi)}
        try:  # an ensemble already on disk is kept (files are only ever added)
            written.append(load_result(path, expect))
            continue
        except FileNotFoundError:
            pass
        except CorruptResultError as err:
            job.log(f"ensemble file {err}; recomputing it")
        mean = np.mean([_standardized(r.predictions) for r in runs], axis=0)
        res = score(
            mean,
            job.data,
            roi,
            model,
            info={"ensemble_of": f"{len(runs)} model seeds: predictions averaged"},
        )
        save_result(
            res,
            path,
            profile=job.profile,
            seed=None,
            extra={
                "data_seed": job.data_seed,
                "seeds": seeds,
                "ensemble": True,
                "dataset_fingerprint": dataset_fingerprint(job.data, roi),
            },
        )
        written.append(load_result(path))
    return written


def reproduce(
    dataset="sim",
    subject: int = 1,
    profile: str = "quick",
    n_seeds: int | None = None,
    first_seed: int = 0,
    data_seed: int | None = None,
    models=None,
    rois=None,
    out="results",
    device=None,
    figures: bool = True,
    data_root=None,
    cnn_weights=None,
    n_bootstrap: int = 2000,
    bootstrap_seed: int = 0,
    reference: str = REFERENCE,
    progress: bool = True,
    log=print,
) -> list:
    """Run every model on every ROI for several model seeds, one results file each, resumable; then
    tables.

    Parameters
    ----------
    dataset : "sim", "vim1", "miyawaki", "kay" (see ``data.load_dataset``), a dataset ``.npz``
        written by ``data.save_npz``, or an ``EncodingDataset``.
    subject, profile : which subject, ``"quick"`` or ``"full"``.
    n_seeds, first_seed : the model seeds are ``first_seed .. first_seed + n_seeds - 1`` (default
        ``n_seeds``: 5 on full, 3 on quick); a seed sets initial weights, validation split, batch
        order, noise.
    data_seed : the simulation's seed (``sim`` only; default 0, the book's simulated subject). It is
        recorded in every file and file name; for a saved simulation it must match the file's.
    models : variant names (default ``ablations.DEFAULT_VARIANTS``); rois : default all of the
        dataset's.
    out : output folder (created). Finished results in it are reused, corrupt ones recomputed.
    device : torch device (default: ``device.get_device()``); figures : write plotly figures.
    data_root : folder of downloaded real data. cnn_weights : ``alexnet_ridge``'s CNN weights (None:
        untrained, "DEFAULT": ImageNet, or a ``.pth`` path).
    n_bootstrap, bootstrap_seed : resamples and seed of the bootstrap comparisons (at least 100).
    reference : the model the comparisons are about (default ``"etecrm"``): it is compared with the
        two-step baseline chosen on validation data, and every other ETECRM variant with it.
    log : where progress messages go (``print``; ``lambda *a: None`` for silence).

    Returns the list of per-seed :class:`EncodingResult` of this run (ROI, model, seed order).
    Interrupting (Ctrl-C) raises ``KeyboardInterrupt`` after the files already finished are on disk.
    """
    check_settings(out, device, n_bootstrap, n_seeds, first_seed, data_seed, dataset)
    seeds = list(
        range(int(first_seed), int(first_seed) + int(n_seeds or DEFAULT_SEEDS.get(profile, 3)))
    )
    models = list(models or ablations.DEFAULT_VARIANTS)
    for name in models:
        ablations.get_variant(name)
    device = get_device(device)
    data = open_dataset(dataset, subject, profile, data_seed, data_root)
    rois = list(rois or data.rois)
    for roi in rois:
        data.check_roi(roi)
    job = _Job(
        Path(out),
        data,
        profile,
        _data_seed(data, data_seed),
        device,
        cnn_weights,
        provenance() | {"device": describe_device(device)},
        progress,
        log,
    )
    if _clean_partial_files(
        job.out, f"{dataset_tag(data.name, job.data_seed)}_{profile}_sub{data.subject}_"
    ):
        log(f"removed partial files left by an interrupted run in {job.out}")
    log(
        f"etecrm reproduce: {dataset_tag(data.name, job.data_seed)} subject "
        f"{data.subject}, profile {profile}, "
        f"model seeds {seeds}, device {job.provenance['device']}, {len(rois)} ROIs x "
        f"{len(models)} models -> {job.out}"
    )
    by_model = _run_all(job, rois, models, seeds)
    if any(r.predictions is None for runs in by_model.values() for r in runs):
        log(
            "some results files hold no test predictions (stripped for committing, `etecrm table "
            "--strip-predictions`): seed ensembles and bootstrap comparisons are kept as "
            "they are, not recomputed"
        )
    else:
        ensembles = _write_ensembles(job, by_model)
        context = {
            "dataset": data.name,
            "data_seed": job.data_seed,
            "profile": profile,
            "subject": data.subject,
        }
        records = compare_run(
            by_model,
            {roi: data.test.responses[roi] for roi in rois},
            context,
            n_bootstrap,
            bootstrap_seed,
            reference,
            log,
        )
        save_comparisons(job.out, records)
        log(f"{len(ensembles)} seed ensembles and {len(records)} bootstrap comparisons written")
    rebuild_outputs(job.out, figures=figures, log=log)
    return [res for roi in rois for m in models for res in by_model[(roi, m)]]


def _run_all(job: _Job, rois, models, seeds) -> dict:
    """Load or train every (ROI, model, seed); returns ``{(roi, model): [results by seed]}``.

    On a GPU the missing seeds of one ETECRM variant train side by side (``gpu.run_concurrently``,
    one CUDA stream each): one small network leaves most of a large GPU idle. ETECRM draws every
    random number from generators of its own seed, so threads cannot mix them up; other models run
    one by one.
    """
    by_model = {}
    total = sum(len(model_seeds(m, seeds, job.cnn_weights)) for m in models) * len(rois)
    with tqdm.auto.tqdm(
        total=total, desc="reproduce", unit="model", disable=not job.progress
    ) as bar:
        for roi in rois:
            for model in models:
                deterministic = is_deterministic(model, job.cnn_weights)
                runs = {
                    seed: _finished(job, roi, model, seed)
                    for seed in model_seeds(model, seeds, job.cnn_weights)
                }
                missing = [seed for seed, found in runs.items() if found is None]
                if missing:
                    bar.set_postfix_str(f"{roi}: {model}, seeds {missing}")
                    streams = len(missing) if ablations.get_variant(model).family == "etecrm" else 1
                    jobs = [
                        lambda seed=seed: _train(job, roi, model, seed, deterministic)
                        for seed in missing
                    ]
                    runs.update(zip(missing, gpu.run_concurrently(jobs, streams, job.device)))
                by_model[(roi, model)] = list(runs.values())
                bar.update(len(runs))
    return by_model


def rebuild_outputs(out, figures: bool = True, log=print) -> list:
    """Write the tables (md, csv, json), ``comparisons.json`` and figures from the files under
    ``out``.

    Needs no dataset and trains nothing (``etecrm table``): use it after copying results files from
    another machine. Seed ensembles and comparisons were computed by :func:`reproduce`, which had
    the data; here they are only read and merged. Returns the per-seed results.
    """
    out = Path(out)
    everything = collect_results(out)
    if not everything:
        raise FileNotFoundError(
            f"no results files under {out / 'results'}; run `etecrm reproduce --out {out}` first"
        )
    ensembles = collect_results(out, "ensembles")
    paths = write_tables(everything, ensembles, out)
    comparisons = load_comparisons(out)
    with atomic_write(out / "comparisons.json") as tmp:
        tmp.write_text(json.dumps(comparisons, indent=1))
    log(
        f"wrote {paths['md']}, {paths['csv']}, {paths['json']} ({len(everything)} results, "
        f"{len(ensembles)} "
        f"ensembles in {out}) and comparisons.json ({len(comparisons)} bootstrap comparisons)"
    )
    if figures:
        for note in write_figures(seed_rows(everything, ensembles), out, comparisons):
            log(note)
    return everything
