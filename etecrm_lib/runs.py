"""The one resumable runner: every experiment names the results it wants, this finds or trains them.

An experiment (``reproduce``, the data-size curves, the control cortices) is a list of
:class:`~etecrm_lib.results.ResultKey` (dataset, simulation seed, profile, subject, ROI, model,
model seed, and what the experiment adds: ``n_train``, ``ground_truth``) and a function that gives
the dataset of a key. :func:`run_keys` does the rest, the same way for all of them:

1. **Resume.** For each key whose file exists under ``OUT/results`` (the layout of
   :mod:`etecrm_lib.results`), read it and verify it (checksums, shapes, and every key field, the
   ROI's data fingerprint, voxel count and CNN weights must match). A missing file is trained; a
   damaged one is reported and trained again, never used; a sound file of other inputs (another
   dataset of the same name, other CNN weights) stops the run (``results.OtherInputsError``):
   it is never overwritten.
2. **Train.** The missing keys of one (dataset, ROI) go to the **trainer** together (see below).
3. **Write.** Each result gets its provenance (:func:`provenance`: library version, git commit,
   torch, Python, host, device) and is written atomically (``results.save_result``: temp file, then
   rename) as soon as the trainer hands it over, then read back and verified.

An interrupted run (Ctrl-C, or killed) loses at most the results the trainer had not handed over;
running the same experiment again trains only what is missing.

The trainer seam
----------------
A trainer is any function ``trainer(dataset, keys, settings) -> iterable of EncodingResult``:

- ``dataset``: the :class:`~etecrm_lib.data.EncodingDataset` of these keys (for the data-size curves
  already cut to the key's ``n_train`` images);
- ``keys``: the missing :class:`ResultKey` of **one dataset and one ROI** (several models, several
  model seeds; consecutive keys of one model are its seeds), in the runner's order;
- ``settings``: :class:`RunSettings` (device, progress bars, CNN weights).

It returns (or yields) **one EncodingResult per key, in the order of ``keys``**, each fitted on the
train split only and scored on the test split (``evaluation.score``), with ``info["seed"]`` set.
A generator's results are written one by one as they come, so a trainer that yields each result
when it is done loses less to an interruption. The default, :func:`train_one_by_one`, fits the
keys one at a time with ``ablations.run_variant`` (on a GPU the seeds of one ETECRM variant side by
side, one CUDA stream each). :func:`train_in_groups` fits the ETECRM keys of a group as one batched
network (``--batched``); any trainer plugs in through the ``trainer=`` argument of ``reproduce``,
``run_data_size`` and ``run_controls``.

>>> keys = [ResultKey.make("sim", 0, "quick", 1, "V1", "etecrm", seed) for seed in range(3)]
>>> found = run_keys(keys, lambda key: dataset, out="results")   # {key: EncodingResult}
"""

from __future__ import annotations

import hashlib
import itertools
import os
import platform
import subprocess
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
import tqdm.auto

from . import __version__, ablations, gpu
from .device import describe_device, get_device
from .results import CorruptResultError, ResultKey, load_result, save_result
from .storage import jsonable, remove_stale_parts

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
    shapes = (dataset.train.stimuli.shape, dataset.test.stimuli.shape)
    h.update(repr((dataset.name, dataset.subject, roi, dataset.n_voxels(roi), *shapes)).encode())
    if dataset.info.get("cache_key"):
        h.update(str(dataset.info["cache_key"]).encode())
    else:
        for arr in (dataset.train.responses[roi], dataset.test.responses[roi]):
            h.update(np.ascontiguousarray(arr, dtype=np.float32).tobytes())
    return h.hexdigest()[:16]


def simulation_seed(dataset) -> int | None:
    """The seed a simulated dataset was made with (``info["seed"]``), or None for real data."""
    return dataset.info.get("seed") if dataset.info.get("generator_version") is not None else None


def data_extras(dataset) -> dict:
    """Key fields the dataset itself adds: ``ground_truth`` for a control cortex (not "cortex")."""
    truth = dataset.info.get("ground_truth")
    return {} if truth in (None, "cortex") else {"ground_truth": truth}


# --------------------------------------------------------------------------- which keys
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


def model_seeds(model: str, seeds, cnn_weights=None) -> list:
    """The seeds ``model`` is run with: all of ``seeds``, or ``[0]`` for a deterministic model."""
    return [DETERMINISTIC_SEED] if is_deterministic(model, cnn_weights) else list(seeds)


def keys_for(dataset, profile: str, rois, models, seeds, cnn_weights=None, **extras) -> list:
    """Every key of ``models`` x ``rois`` x model seeds on ``dataset`` (ROI, model, seed order).

    Deterministic models get one key (seed 0, :func:`model_seeds`). ``extras``: the experiment's
    own key fields (e.g. ``n_train=500``); the dataset's own (:func:`data_extras`) are added.
    """
    extras = data_extras(dataset) | extras
    sim = simulation_seed(dataset)
    return [
        ResultKey.make(dataset.name, sim, profile, dataset.subject, roi, model, s, **extras)
        for roi in rois
        for model in models
        for s in model_seeds(model, seeds, cnn_weights)
    ]


# --------------------------------------------------------------------------- the trainer seam
@dataclass
class RunSettings:
    """How the models of a run are fitted (the same for every key of the run).

    device : torch device; progress : progress bars of each fit; cnn_weights : ``alexnet_ridge``'s
    CNN weights (None: untrained); provenance : added to every result's ``info`` (:meth:`start`).
    """

    device: object = None
    progress: bool = True
    cnn_weights: object = None
    provenance: dict = field(default_factory=dict)

    @classmethod
    def start(cls, device=None, progress: bool = True, cnn_weights=None) -> "RunSettings":
        """Settings with the device chosen (``device.get_device``) and the provenance recorded."""
        device = get_device(device)
        return cls(
            device, progress, cnn_weights, provenance() | {"device": describe_device(device)}
        )


Trainer = Callable[[object, list, RunSettings], Iterable]
"""``trainer(dataset, keys, settings) -> one EncodingResult per key, in order`` (see the module)."""


def train_one_by_one(dataset, keys: list, settings: RunSettings):
    """The default trainer: ``ablations.run_variant`` for each key, yielding each result when done.

    On a GPU the missing seeds of one ETECRM variant train side by side (``gpu.run_concurrently``,
    one CUDA stream each; they are handed over together): one small network leaves most of a large
    GPU idle. ETECRM draws every random number from generators of its own seed, so threads cannot
    mix them up. Everything else runs one after the other.
    """
    device = get_device(settings.device)
    for model, group in itertools.groupby(keys, key=lambda key: key.model):
        jobs = [
            partial(
                ablations.run_variant,
                dataset,
                key.model,
                key.roi,
                profile=key.profile,
                seed=key.seed,
                device=device,
                progress=settings.progress,
                cnn_weights=settings.cnn_weights,
            )
            for key in group
        ]
        side_by_side = ablations.get_variant(model).family == "etecrm" and device.type == "cuda"
        if side_by_side and len(jobs) > 1:
            yield from gpu.run_concurrently(jobs, len(jobs), device)
        else:
            for job in jobs:
                yield job()


def train_in_groups(dataset, keys: list, settings: RunSettings):
    """A trainer that fits the missing ETECRM models of the dataset and ROI (every variant and
    seed) as one batched network (``ablations.run_etecrm_group``, ``batched.py``) and every other
    model as :func:`train_one_by_one` does; each result is handed over when its key's turn comes.
    The same models as :func:`train_one_by_one` (up to the order of floating-point sums). Opt-in:
    on an H100 it measured no faster than the CUDA streams (``benchmarks/bench_batched.py``).
    """
    grouped = {}
    for key in keys:
        if ablations.trains_in_groups(key.model):
            grouped.setdefault(key.profile, []).append(key)
    done = {}
    for profile, group in grouped.items():
        runs = [(key.model, key.roi, key.seed) for key in group]
        fitted = ablations.run_etecrm_group(
            dataset, runs, profile, settings.device, settings.progress
        )
        done.update(zip(group, fitted))
    for key in keys:
        if key in done:
            yield done.pop(key)
        else:
            yield from train_one_by_one(dataset, [key], settings)


# --------------------------------------------------------------------------- files
def expectation(key: ResultKey, dataset, settings: RunSettings) -> dict:
    """What a results file of ``key`` must record to be used: the key's fields, the ROI's voxel
    count and data fingerprint, and (models on CNN features) the CNN weights."""
    expect = key.fields() | {
        "n_voxels": dataset.n_voxels(key.roi),
        "dataset_fingerprint": dataset_fingerprint(dataset, key.roi),
    }
    if ablations.get_variant(key.model).options.get("features") == "alexnet":
        weights = settings.cnn_weights
        expect["cnn_weights"] = jsonable(weights if weights is None else str(weights))
    return expect


def load_finished(out, key: ResultKey, dataset, settings: RunSettings, log=print):
    """The verified result of ``key`` under ``out``, or None (missing; or corrupt: ``log`` says)."""
    try:
        return load_result(key.path(out), expectation(key, dataset, settings))
    except FileNotFoundError:
        return None
    except CorruptResultError as err:
        log(f"results file {err}; recomputing it")
        return None


def store(out, key: ResultKey, dataset, result, settings: RunSettings, extra_meta=None):
    """Record the key and provenance in ``result.info``; with ``out``, write it and read it back."""
    if (result.model, result.roi) != (key.model, key.roi):
        raise ValueError(
            f"the trainer returned {result.model}/{result.roi} for the key {key.stem()}: a trainer "
            "must return one result per key, in the order of the keys"
        )
    result.info.update(settings.provenance | dict(key.extras))
    result.info.setdefault("seed", key.seed)
    if out is None:
        return result
    meta = {
        "data_seed": key.simulation_seed,
        **dict(key.extras),
        "dataset_fingerprint": dataset_fingerprint(dataset, key.roi),
        "deterministic": is_deterministic(key.model, settings.cnn_weights),
        "cnn_weights": jsonable(settings.cnn_weights),
        **(extra_meta or {}),
    }
    save_result(result, key.path(out), profile=key.profile, seed=key.seed, extra=meta)
    return load_result(key.path(out), expectation(key, dataset, settings))


def clean_partial_files(out, prefix: str) -> int:
    """Delete temp files a killed run left (``.<prefix>*.part`` untouched for an hour:
    ``storage.remove_stale_parts``); a run in progress keeps its own. Returns how many."""
    folders = ("results", "ensembles")
    return sum(remove_stale_parts(Path(out) / folder, prefix) for folder in folders)


# --------------------------------------------------------------------------- the runner
def run_keys(
    keys,
    dataset_for,
    out=None,
    trainer: Trainer | None = None,
    settings: RunSettings | None = None,
    extra_meta: dict | None = None,
    log=print,
    desc: str = "models",
    progress: bool | None = None,
) -> dict:
    """Find or train the result of every key; returns ``{key: EncodingResult}`` in the keys' order.

    keys : :class:`ResultKey` list (duplicates are run once).
    dataset_for : ``dataset_for(key) -> EncodingDataset``, called once per (dataset, ROI) group.
    out : the output folder (None: nothing is read or written, everything is trained).
    trainer : the function that fits a group of missing keys (default :func:`train_one_by_one`;
        see the module docstring). settings : :class:`RunSettings` (default:
        :meth:`RunSettings.start`).
    extra_meta : more fields for every file's ``meta`` (e.g. how a simulation was made).
    log : where "recomputing a corrupt file" notes go; desc, progress : the run's progress bar
        (its label; shown by default when ``settings.progress``).
    """
    trainer = trainer or train_one_by_one
    settings = settings or RunSettings.start()
    keys = list(dict.fromkeys(keys))
    groups = {}
    for key in keys:
        groups.setdefault(key.data_group(), []).append(key)
    found = {}
    with tqdm.auto.tqdm(
        total=len(keys),
        desc=desc,
        unit="model",
        disable=not (settings.progress if progress is None else progress),
    ) as bar:
        for group in groups.values():
            dataset = dataset_for(group[0])
            if out is not None:
                for key in group:
                    result = load_finished(out, key, dataset, settings, log)
                    if result is not None:
                        found[key] = result
                        bar.update()
            missing = [key for key in group if key not in found]
            if not missing:
                continue
            bar.set_postfix_str(
                f"{missing[0].roi}: {', '.join(dict.fromkeys(k.model for k in missing))}"
            )
            results = iter(trainer(dataset, missing, settings))
            for key in missing:
                result = next(results, None)
                if result is None:
                    raise ValueError(f"the trainer returned no result for {key.stem()}")
                found[key] = store(out, key, dataset, result, settings, extra_meta)
                bar.update()
    return {key: found[key] for key in keys}
