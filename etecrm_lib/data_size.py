"""How much data does end-to-end need? ETECRM and the Gabor model on growing training sets.

The paper argues that larger fMRI data sets will favour end-to-end models. The simulation can
test that: :func:`run_data_size` simulates one subject with many train images (the largest size,
e.g. 7,000, four times vim-1's 1,750), then trains each model on **nested** subsets - the first
250, 500, 1,000, ... train images, so every subset holds the smaller ones - and scores every fit
on the **same** 120 test images. Each (size, ROI, model, model seed) gives one
:class:`evaluation.EncodingResult` with ``info["n_train"]``.

:func:`learning_curves` turns the results into one row per (ROI, model, size): the median test r
(mean over model seeds) with a 95 % bootstrap interval over test images *and* model seeds, and
:func:`crossings` says per ROI where the ETECRM curve crosses the Gabor curve, with a paired
interval on the difference at every size.

Results files (the one runner, :mod:`etecrm_lib.runs`: resumable, a finished, verified file is read
instead of training again)::

    OUT/results/sim-data<S>_<profile>_sub<subject>_<roi>_<model>_n<size>_seed<seed>.npz
    OUT/curves.json     the learning-curve rows, the crossings and how the run was made

>>> from etecrm_lib.data_size import DataSizeConfig, run_data_size
>>> results = run_data_size(DataSizeConfig.for_profile("quick"), out="datasize_quick")
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from .data import simulate
from .data.dataset import EncodingDataset, Split
from .profiles import DEFAULT_PROFILE, PROFILES, Profile, check_profile
from .resampling import check_resamples
from .results import OtherInputsError, ResultKey
from .runs import RunSettings, keys_for, provenance, run_keys
from .seed_statistics import images_and_seeds_bootstrap
from .storage import atomic_write, jsonable


@dataclass(frozen=True)
class DataSizeConfig:
    """What :func:`run_data_size` runs.

    sizes : numbers of train images (nested subsets of the first ``max(sizes)`` simulated images)
    models : variant names of :mod:`etecrm_lib.ablations` (default ETECRM and the Gabor ridge model)
    rois : ROIs to fit
    seeds : number of model seeds (0, 1, ...); each seed is a separate fit of every model and size
    profile : the simulation and model profile, "quick" (CPU, 64 px) or "full" (vim-1 sized, GPU)
    subject, simulation_seed, ground_truth : which simulated subject (see ``data.simulate``)
    n_bootstrap : resamples of the test images (and seeds) for the intervals
    """

    sizes: tuple = (250, 500, 1000, 1750, 3500, 7000)
    models: tuple = ("etecrm", "gwp_ridge")
    rois: tuple = ("V1", "V2", "V3", "V4", "LO")
    seeds: int = 3
    profile: str = "full"
    subject: int = 1
    simulation_seed: int = 0
    ground_truth: str = "cortex"
    n_bootstrap: int = 1000

    @classmethod
    def for_profile(cls, profile: Profile = DEFAULT_PROFILE, **changes) -> "DataSizeConfig":
        """``"full"``: 250 to 7,000 images, every ROI, 3 seeds (a GPU run); ``"quick"``: 100 to 800
        images of 64 px, V1 only, 2 seeds (a few minutes on a CPU)."""
        if check_profile(profile) == "quick":
            base = cls(sizes=(100, 200, 400, 800), rois=("V1",), seeds=2, profile="quick")
        else:
            base = cls()
        config = replace(base, **changes)
        config.check()
        return config

    def check(self) -> None:
        """Raise a ValueError that says what to change."""
        sizes = [int(n) for n in self.sizes]
        if not sizes or min(sizes) < 20 or sorted(set(sizes)) != sizes:
            raise ValueError(
                "sizes must be increasing numbers of train images, each at least 20, got "
                f"{self.sizes}"
            )
        if self.seeds < 1:
            raise ValueError(f"seeds must be at least 1, got {self.seeds}")
        check_resamples(self.n_bootstrap)
        if self.profile not in PROFILES:
            raise ValueError(f"profile must be one of {PROFILES}, got {self.profile!r}")
        if not self.models or not self.rois:
            raise ValueError("name at least one model and one ROI")


def first_images(dataset: EncodingDataset, n_train: int) -> EncodingDataset:
    """The dataset with only its first ``n_train`` train images (and responses); the test split is
    shared.

    ``info["n_train"]`` records the size; a simulation's ``info["cache_key"]`` gets ``/first<n>``
    appended, so results files of different sizes never pass for each other.
    """
    if not 1 <= n_train <= dataset.train.n_images:
        raise ValueError(
            f"n_train must be between 1 and the {dataset.train.n_images} train images of the "
            f"dataset, got {n_train}; simulate more with simulate(..., n_train=...)"
        )
    train = Split(
        dataset.train.stimuli[:n_train],
        {roi: r[:n_train] for roi, r in dataset.train.responses.items()},
    )
    info = dict(dataset.info, n_train=int(n_train))
    if info.get("cache_key"):
        info["cache_key"] = f"{info['cache_key']}/first{n_train}"
    return EncodingDataset(dataset.name, dataset.subject, train, dataset.test, dataset.voxels, info)


def simulate_for(config: DataSizeConfig) -> EncodingDataset:
    """The simulated subject of ``config``, with ``max(config.sizes)`` train images (cached)."""
    return simulate(
        config.subject,
        "quick" if config.profile == "quick" else "full",
        seed=config.simulation_seed,
        ground_truth=config.ground_truth,
        n_train=max(config.sizes),
    )


def result_file(
    out, dataset: EncodingDataset, profile: str, roi: str, model: str, n_train: int, seed: int
) -> Path:
    """Where the results file of one (ROI, model, size, seed) lives under ``out``."""
    return size_key(dataset, profile, roi, model, n_train, seed).path(out)


def size_key(dataset, profile: str, roi: str, model: str, n_train: int, seed: int) -> ResultKey:
    """The :class:`~etecrm_lib.results.ResultKey` of one (ROI, model, size, seed)."""
    (key,) = keys_for(dataset, profile, [roi], [model], [seed], n_train=int(n_train))
    return key


def run_data_size(
    config: DataSizeConfig | None = None,
    dataset: EncodingDataset | None = None,
    out=None,
    device=None,
    progress: bool = True,
    trainer=None,
) -> list:
    """Fit every model of ``config`` on every size, ROI and model seed -> ``list[EncodingResult]``.

    ``dataset``: default :func:`simulate_for` ``(config)``; it needs at least ``max(config.sizes)``
    train images. An experiment on the one runner (:mod:`etecrm_lib.runs`; ``trainer``: see there):
    with ``out``, each result is written as soon as it exists (atomic) and read back to check it; a
    later run with the same arguments loads the finished files (verified: checksums, shapes, the
    ROI's data fingerprint, size and seed) instead of training again, and at the end
    ``OUT/curves.json`` is written. Results come in (size, seed, ROI, model) order.
    """
    config = config or DataSizeConfig.for_profile("full")
    config.check()
    dataset = dataset if dataset is not None else simulate_for(config)
    if dataset.train.n_images < max(config.sizes):
        raise ValueError(
            f"the dataset has {dataset.train.n_images} train images; the largest size is "
            f"{max(config.sizes)}"
        )
    if out is not None:
        check_curves_owner(out, config, dataset)
    keys = [
        size_key(dataset, config.profile, roi, model, n_train, seed)
        for n_train in config.sizes
        for seed in range(config.seeds)
        for roi in config.rois
        for model in config.models
    ]
    simulation = {
        k: dataset.info.get(k) for k in ("seed", "ground_truth", "network_seed", "n_train")
    }
    found = run_keys(
        keys,
        lambda key: first_images(dataset, key.extra("n_train")),
        out,
        trainer,
        RunSettings.start(device, progress=False),
        extra_meta={"simulation": simulation},
        log=lambda message: warnings.warn(message, stacklevel=3),
        desc="data size",
        progress=progress,
    )
    results = list(found.values())
    if out is not None:
        write_curves(results, dataset, config, out)
    return results


# --------------------------------------------------------------------------- learning curves
def learning_curves(
    results,
    dataset: EncodingDataset,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> list:
    """One row per (ROI, model, size): median test r, mean over model seeds, with a bootstrap
    interval.

    The interval resamples the test images (the same resamples for every model and size) and the
    model seeds. Rows: ``roi, model, n_train, n_seeds, median_r, ci_low, ci_high``.
    """
    rows = []
    alpha = (1 - confidence) / 2
    for roi in dict.fromkeys(res.roi for res in results):
        grouped = {}
        for res in results:
            if res.roi == roi:
                grouped.setdefault((res.model, int(res.info["n_train"])), []).append(
                    res.predictions
                )
        stats = images_and_seeds_bootstrap(grouped, dataset.test.responses[roi], n_bootstrap, seed)
        for (model, n_train), (observed, resampled) in stats.items():
            rows.append(
                {
                    "roi": roi,
                    "model": model,
                    "n_train": n_train,
                    "n_seeds": len(grouped[(model, n_train)]),
                    "median_r": observed,
                    "ci_low": float(np.quantile(resampled, alpha)),
                    "ci_high": float(np.quantile(resampled, 1 - alpha)),
                }
            )
    return sorted(
        rows,
        key=lambda r: (
            list(dict.fromkeys(x.roi for x in results)).index(r["roi"]),
            r["model"],
            r["n_train"],
        ),
    )


def crossings(
    results,
    dataset: EncodingDataset,
    model_a: str = "etecrm",
    model_b: str = "gwp_ridge",
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> list:
    """Per ROI, ``model_a`` minus ``model_b`` (median r) at every size, and where the curves cross.

    Returns one dict per ROI: ``roi``, ``differences`` (per size: ``n_train, difference, ci_low,
    ci_high``; paired: both models on the same resampled test images and seeds) and ``crossing``:
    the training-set size at which ``model_a`` first overtakes ``model_b`` (interpolated on a log
    scale between the two sizes around the sign change), or None if it does not within the sizes
    (``a_ahead_at_all_sizes`` says which side it stays on).
    """
    alpha = (1 - confidence) / 2
    out = []
    for roi in dict.fromkeys(res.roi for res in results):
        grouped = {}
        for res in results:
            if res.roi == roi and res.model in (model_a, model_b):
                grouped.setdefault((res.model, int(res.info["n_train"])), []).append(
                    res.predictions
                )
        sizes = sorted(
            {n for (m, n) in grouped if (model_a, n) in grouped and (model_b, n) in grouped}
        )
        if not sizes:
            continue
        stats = images_and_seeds_bootstrap(grouped, dataset.test.responses[roi], n_bootstrap, seed)
        diffs = []
        for n in sizes:
            (obs_a, res_a), (obs_b, res_b) = stats[(model_a, n)], stats[(model_b, n)]
            d = res_a - res_b
            diffs.append(
                {
                    "n_train": n,
                    "difference": obs_a - obs_b,
                    "ci_low": float(np.quantile(d, alpha)),
                    "ci_high": float(np.quantile(d, 1 - alpha)),
                }
            )
        crossing = None
        for before, after in zip(diffs, diffs[1:]):
            if before["difference"] <= 0 < after["difference"]:
                t = before["difference"] / (before["difference"] - after["difference"])
                crossing = float(
                    math.exp(
                        math.log(before["n_train"])
                        + t * (math.log(after["n_train"]) - math.log(before["n_train"]))
                    )
                )
                break
        out.append(
            {
                "roi": roi,
                "model_a": model_a,
                "model_b": model_b,
                "differences": diffs,
                "crossing": crossing,
                "a_ahead_at_all_sizes": all(d["difference"] > 0 for d in diffs),
            }
        )
    return out


def write_curves(results, dataset: EncodingDataset, config: DataSizeConfig, out) -> Path:
    """Write ``OUT/curves.json``: the config, the simulation, the learning curves and the
    crossings."""
    models = list(config.models)
    summary = {
        "config": asdict(config),
        "simulation": {
            k: dataset.info.get(k)
            for k in ("profile", "seed", "ground_truth", "network_seed", "n_train")
        },
        "provenance": provenance(),
        "curves": learning_curves(results, dataset, config.n_bootstrap),
        "crossings": crossings(results, dataset, models[0], models[1], config.n_bootstrap)
        if len(models) > 1
        else [],
        "wall_time_s": {
            f"{r.roi}/{r.model}/n{r.info['n_train']}/seed{r.info.get('seed')}": r.info.get(
                "wall_time_s"
            )
            for r in results
        },
    }
    path = Path(out) / "curves.json"
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(jsonable(summary), indent=1))
    return path


def crossing_sentences(cross_rows, model_a: str = "etecrm") -> list:
    """One sentence per ROI of :func:`crossings`: where ``model_a`` overtakes, and at which sizes
    it is reliably ahead or behind (the 95 % interval excludes 0)."""
    sentences = []
    for row in cross_rows:
        diffs = row["differences"]
        if row["a_ahead_at_all_sizes"]:
            where = "the difference is above 0 at every size tried (no crossing)"
        elif row["crossing"] is not None:
            where = f"the difference first turns positive at about {row['crossing']:.0f} images"
            if diffs[-1]["difference"] <= 0:
                where += ", but is negative again at the largest size"
        else:
            where = "the difference never turns positive within these sizes"
        ahead = ", ".join(str(d["n_train"]) for d in diffs if d["ci_low"] > 0) or "no size"
        behind = ", ".join(str(d["n_train"]) for d in diffs if d["ci_high"] < 0) or "no size"
        sentences.append(
            f"{row['roi']}: {where}; {model_a} reliably ahead at {ahead}, reliably behind at "
            f"{behind}."
        )
    return sentences


def read_curves(out) -> dict | None:
    """The ``curves.json`` a run wrote under ``out``, or None if there is none (a clear error if it
    is broken)."""
    path = Path(out) / "curves.json"
    if not path.exists():
        return None
    try:
        summary = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{path} is not valid JSON ({err}); run `etecrm datasize` again to rewrite it"
        ) from err
    if not isinstance(summary, dict) or not {"curves", "crossings", "config"} <= set(summary):
        raise ValueError(
            f"{path} lacks the 'curves', 'crossings' or 'config' entries; run `etecrm "
            "datasize` again"
        )
    return summary


def _data_identity(subject, profile, simulation: dict) -> str:
    """The data a curves file describes, in words: subject, profile, simulation seed, truth."""
    return (
        f"subject {subject}, profile {profile}, simulation seed {simulation.get('seed')}, "
        f"ground truth {simulation.get('ground_truth') or 'cortex'}"
    )


def check_curves_owner(out, config: DataSizeConfig, dataset: EncodingDataset) -> None:
    """Refuse (``results.OtherInputsError``) a run into ``out`` whose ``curves.json`` describes
    other data (another subject, profile, simulation seed or ground truth): it is never replaced.
    A missing or unreadable ``curves.json`` is no obstacle (the run writes it)."""
    try:
        summary = read_curves(out)
        old = summary and _data_identity(
            summary["config"].get("subject"),
            summary["config"].get("profile"),
            summary.get("simulation") or {},
        )
    except (ValueError, AttributeError, TypeError):
        return
    simulation = {k: dataset.info.get(k) for k in ("seed", "ground_truth")}
    new = _data_identity(config.subject, config.profile, simulation)
    if old and old != new:
        raise OtherInputsError(
            f"{Path(out) / 'curves.json'} holds the curves of {old}; this run's data are {new}: "
            "refusing to overwrite it. Use another --out for these data"
        )


def find_committed_run(folder: str = "data/results/data_size") -> Path | None:
    """The folder of a committed run (one holding ``curves.json``) under the working directory or a
    parent of it (the book's chapters run in ``book/``), or None if there is none."""
    for base in [Path.cwd(), *Path.cwd().parents]:
        if (base / folder / "curves.json").exists():
            return base / folder
    return None
