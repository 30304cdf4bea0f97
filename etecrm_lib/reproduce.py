"""One command reproduces the comparison: every model on every ROI, several model seeds, resumable.

:func:`reproduce` is an experiment on the one runner (:mod:`etecrm_lib.runs`): its keys are the
models and ablations of :mod:`etecrm_lib.ablations` on every ROI of one subject, for the model
seeds ``first_seed .. first_seed + n_seeds - 1`` (deterministic models once, as seed 0). The runner
writes one results file per key as soon as it is done (:mod:`etecrm_lib.results`: files and
folder layout) and reads finished files instead of training again, so a run that was interrupted
(Ctrl-C) or killed loses at most the models in progress.

At the end, with the data still at hand, it writes the seed ensembles (predictions averaged over
seeds, then scored on the test split), the bootstrap comparisons over test images and seeds
(:mod:`etecrm_lib.comparisons`: ``etecrm`` vs the two-step baseline chosen on validation data, each
ETECRM ablation vs ``etecrm``), then the tables and figures over everything in the folder
(:func:`rebuild_outputs`, also ``etecrm table``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from . import ablations
from .comparisons import REFERENCE, compare_run, load_comparisons, save_comparisons
from .data.registry import open_dataset
from .device import get_device
from .evaluation import score
from .figures import write_figures
from .resampling import MIN_BOOTSTRAP
from .results import (
    MAX_SEED,
    CorruptResultError,
    collect_results,
    dataset_tag,
    ensemble_path,
    load_result,
    save_result,
)
from .runs import (
    RunSettings,
    clean_partial_files,
    dataset_fingerprint,
    keys_for,
    run_keys,
    simulation_seed,
)
from .seed_statistics import seed_ensemble
from .storage import atomic_write
from .tables import seed_rows, write_tables
from .vocabulary import UNSET, renamed

DEFAULT_SEEDS = {"quick": 3, "full": 5}


# --------------------------------------------------------------------------- checks and choices
def _fail(what: str, given, todo: str):
    raise ValueError(f"{what} (given: {given!r}); {todo}")


def check_settings(
    out,
    device=None,
    n_bootstrap: int = 2000,
    n_seeds: int | None = None,
    first_seed: int = 0,
    simulation_seed: int | None = None,
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
    sim = simulation_seed or 0
    if not 0 <= int(first_seed) <= last_seed <= MAX_SEED or not 0 <= sim <= MAX_SEED:
        _fail(
            f"seeds must be from 0 to {MAX_SEED} (2**31 - 1)",
            {"first_seed": first_seed, "n_seeds": n_seeds, "simulation_seed": simulation_seed},
            "give smaller seeds",
        )
    name = str(dataset) if isinstance(dataset, (str, Path)) else None
    if simulation_seed is not None and name not in (None, "sim") and not name.endswith(".npz"):
        _fail(
            "--simulation-seed is the seed of the simulated cortex; it means nothing for a real "
            "dataset",
            name,
            "leave --simulation-seed out, or use --dataset sim",
        )


def _simulation_seed(data, requested: int | None) -> int | None:
    """The simulation seed the data were made with (None for real data); an error if it is not
    ``requested``."""
    seed = simulation_seed(data)
    if requested is not None and seed != requested:
        _fail(
            f"the dataset was simulated with seed {seed}, not the simulation seed asked for",
            requested,
            "leave --simulation-seed out for a saved dataset, or simulate it again with that seed",
        )
    return seed


def write_ensembles(out, data, profile: str, simulation_seed, by_model: dict, log=print) -> list:
    """Average the stored predictions of every model with >= 2 seeds, score on the test split, save.

    ``by_model``: ``{(roi, model): [EncodingResult per seed]}``. The average is
    ``seed_statistics.seed_ensemble`` (each seed standardized per voxel first). Returns the
    ensembles as read back from their files.
    """
    written = []
    for (roi, model), runs in by_model.items():
        if len(runs) < 2:
            continue
        seeds = [r.info["seed"] for r in runs]
        tag = (data.name, profile, data.subject, roi, model, seeds, simulation_seed)
        path = ensemble_path(out, *tag)
        extra = {
            "data_seed": simulation_seed,
            "seeds": seeds,
            "ensemble": True,
            "dataset_fingerprint": dataset_fingerprint(data, roi),
        }
        try:  # an ensemble already on disk is kept: a results folder only gains files
            written.append(load_result(path, {"seeds": seeds, **extra}))
            continue
        except FileNotFoundError:
            pass
        except CorruptResultError as err:
            log(f"ensemble file {err}; recomputing it")
        res = score(
            seed_ensemble([r.predictions for r in runs]),
            data,
            roi,
            model,
            info={"ensemble_of": f"{len(runs)} model seeds: predictions averaged"},
        )
        save_result(res, path, profile=profile, seed=None, extra=extra)
        written.append(load_result(path))
    return written


def reproduce(
    dataset="sim",
    subject: int = 1,
    profile: str = "quick",
    n_seeds: int | None = None,
    first_seed: int = 0,
    simulation_seed: int | None = None,
    models=None,
    rois=None,
    out="results",
    device=None,
    figures: bool = True,
    root=None,
    cnn_weights=None,
    n_bootstrap: int = 2000,
    bootstrap_seed: int = 0,
    reference: str = REFERENCE,
    progress: bool = True,
    log=print,
    trainer=None,
    data_seed=UNSET,
    data_root=UNSET,
) -> list:
    """Run every model on every ROI for several model seeds, one results file each (resumable),
    then the ensembles, comparisons, tables and figures.

    Parameters
    ----------
    dataset : "sim", "vim1", "miyawaki", "kay" (see ``data.load_dataset``), a dataset ``.npz``
        written by ``data.save_npz``, or an ``EncodingDataset``.
    subject, profile : which subject, ``"quick"`` or ``"full"``.
    n_seeds, first_seed : the model seeds are ``first_seed .. first_seed + n_seeds - 1`` (default
        ``n_seeds``: 5 on full, 3 on quick); a seed sets initial weights, validation split, batch
        order, noise.
    simulation_seed : the seed of the simulated cortex (``sim`` only; default 0, the book's
        simulated subject). It is recorded in every file (as ``data_seed``) and file name; for a
        saved simulation it must match the file's. (``data_seed``: its old name.)
    models : variant names (default ``ablations.DEFAULT_VARIANTS``); rois : default all of the
        dataset's.
    out : output folder (created). Finished results in it are reused, corrupt ones recomputed.
    device : torch device (default: ``device.get_device()``); figures : write plotly figures.
    root : folder of downloaded real data (``data_root``: its old name).
    cnn_weights : ``alexnet_ridge``'s CNN weights (None: untrained, "DEFAULT": ImageNet, or a
        ``.pth`` path).
    n_bootstrap, bootstrap_seed : resamples and seed of the bootstrap comparisons (at least 100).
    reference : the model the comparisons are about (default ``"etecrm"``): it is compared with the
        two-step baseline chosen on validation data, and every other ETECRM variant with it.
    progress : progress bars; log : where messages go (``print``; ``lambda *a: None`` for silence).
    trainer : what fits the missing models of one ROI (default ``runs.train_one_by_one``; see
        :mod:`etecrm_lib.runs`).

    Returns the list of per-seed :class:`EncodingResult` of this run (ROI, model, seed order).
    Interrupting (Ctrl-C) raises ``KeyboardInterrupt`` after the files already finished are on disk.
    """
    simulation_seed = renamed(simulation_seed, data_seed, "data_seed")
    root = renamed(root, data_root, "data_root")
    check_settings(out, device, n_bootstrap, n_seeds, first_seed, simulation_seed, dataset)
    n_seeds = int(n_seeds or DEFAULT_SEEDS.get(profile, 3))
    seeds = list(range(int(first_seed), int(first_seed) + n_seeds))
    models = list(models or ablations.DEFAULT_VARIANTS)
    for name in models:
        ablations.get_variant(name)
    settings = RunSettings.start(device, progress, cnn_weights)
    data = open_dataset(dataset, subject, profile, simulation_seed, root)
    rois = list(rois or data.rois)
    for roi in rois:
        data.check_roi(roi)
    out, simulation_seed = Path(out), _simulation_seed(data, simulation_seed)
    tag = f"{dataset_tag(data.name, simulation_seed)}_{profile}_sub{data.subject}"
    if clean_partial_files(out, f"{tag}_"):
        log(f"removed partial files left by an interrupted run in {out}")
    log(
        f"etecrm reproduce: {tag}, model seeds {seeds}, device {settings.provenance['device']}, "
        f"{len(rois)} ROIs x {len(models)} models -> {out}"
    )
    keys = keys_for(data, profile, rois, models, seeds, cnn_weights)
    found = run_keys(keys, lambda key: data, out, trainer, settings, log=log, desc="reproduce")
    by_model = {}
    for key, res in found.items():
        by_model.setdefault((key.roi, key.model), []).append(res)
    if any(r.predictions is None for r in found.values()):
        log(
            "some results files hold no test predictions (stripped for committing, `etecrm table "
            "--strip-predictions`): seed ensembles and bootstrap comparisons are kept as they "
            "are, not recomputed"
        )
    else:
        ensembles = write_ensembles(out, data, profile, simulation_seed, by_model, log)
        context = {
            "dataset": data.name,
            "data_seed": simulation_seed,
            "profile": profile,
            "subject": data.subject,
        }
        responses = {roi: data.test.responses[roi] for roi in rois}
        records = compare_run(
            by_model, responses, context, n_bootstrap, bootstrap_seed, reference, log
        )
        save_comparisons(out, records)
        log(f"{len(ensembles)} seed ensembles and {len(records)} bootstrap comparisons written")
    rebuild_outputs(out, figures=figures, log=log)
    return list(found.values())


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
