"""One command reproduces the comparison: every model on every ROI, one results file each, resumable.

:func:`reproduce` runs the models and ablations of :mod:`etecrm_lib.ablations` on every ROI of one
subject and writes **one results file per (dataset, subject, ROI, model, seed)** as soon as that
model is done. A second run with the same arguments reads the finished files instead of training
again, so a run that was interrupted (Ctrl-C) or killed loses at most the model in progress (the
ETECRM variants of one ROI train together, batched: for them, that ROI's batch). At the end it
writes the comparison table (``table.md``, ``table.csv``, ``table.json``) over every results file
in the folder, the paired bootstrap comparisons of ETECRM with the best two-step model per ROI
(``comparisons.json``) and the figures (``figures/*.html`` and ``.png``). :func:`rebuild_outputs`
(``etecrm table``) rewrites tables and figures from the files alone, e.g. after a GPU run.

Layout of the output folder::

    OUT/results/<dataset>_<profile>_sub<subject>_<roi>_<model>_seed<seed>.npz
    OUT/comparisons/<dataset>_<profile>_sub<subject>.json   (one per run)
    OUT/table.md  OUT/table.csv  OUT/table.json  OUT/comparisons.json  OUT/figures/

A results file is a compressed ``.npz`` holding the per-voxel arrays (``test_r``, ``noise_ceiling``,
``oracle_ceiling`` in float32; the test ``predictions`` in float16, enough for bootstrap
comparisons) and ``meta``, a JSON string: library version, git commit, configuration, seed, device,
torch version, wall time, where the features' weights came from, and a SHA-256 of every array. A
file whose arrays, checksums, shapes or metadata do not match what this run expects is reported as
corrupt and recomputed, never used.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import platform
import subprocess
import warnings
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from . import __version__
from .evaluation import Comparison, EncodingResult, paired_bootstrap, summary_table
from .storage import atomic_write

RESULTS_FORMAT = 1
_ARRAY_DTYPES = {"test_r": np.float32, "noise_ceiling": np.float32, "oracle_ceiling": np.float32,
                 "predictions": np.float16}
TABLE_COLUMNS = ["dataset", "profile", "subject", "seed", "roi", "model", "n_voxels", "median_r", "mean_r",
                 "top300_mean_r", "n_significant", "frac_ceiling", "frac_oracle_ceiling", "median_ceiling",
                 "wall_time_s", "device"]


class CorruptResultError(ValueError):
    """A results file that cannot be trusted (truncated, bad JSON, wrong shape, checksum mismatch...)."""


# --------------------------------------------------------------------------- provenance
def git_commit() -> str | None:
    """The commit of the checkout this library runs from (``+dirty`` if files changed), or None.

    Outside a git checkout (a copy of the files on another machine) ``$ETECRM_GIT_COMMIT`` is used.
    """
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("ETECRM_GIT_COMMIT") or None
    return commit + ("+dirty" if dirty else "") if commit else None


def provenance() -> dict:
    """What produced a result: library version, git commit, torch and Python versions, host."""
    import torch

    return {"library_version": __version__, "git_commit": git_commit(), "torch_version": torch.__version__,
            "python_version": platform.python_version(), "host": platform.node()}


def dataset_fingerprint(dataset, roi: str) -> str:
    """SHA-256 (first 16 hex digits) that identifies one ROI's data, stored in every results file.

    Real data: a hash of the ROI's train and test responses and the stimulus shapes. Simulated data
    carry ``info["cache_key"]``, the hash of everything the simulation depends on; that is used
    instead, because regenerating the simulation on another GPU can change the last bits of the
    responses. A file computed on other data (another simulation version, another voxel selection)
    does not match and is recomputed.
    """
    h = hashlib.sha256()
    h.update(repr((dataset.name, dataset.subject, roi, dataset.n_voxels(roi), dataset.train.stimuli.shape,
                   dataset.test.stimuli.shape)).encode())
    if dataset.info.get("cache_key"):
        h.update(str(dataset.info["cache_key"]).encode())
    else:
        for arr in (dataset.train.responses[roi], dataset.test.responses[roi]):
            h.update(np.ascontiguousarray(arr, dtype=np.float32).tobytes())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- one results file
def result_path(out, dataset: str, profile: str, subject: int, roi: str, model: str, seed: int) -> Path:
    """Where the results file of one (dataset, profile, subject, ROI, model, seed) lives under ``out``."""
    return Path(out) / "results" / f"{dataset}_{profile}_sub{subject}_{roi}_{model}_seed{seed}.npz"


def _sha256(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


def _jsonable(value):
    """``value`` with numpy scalars/arrays and paths turned into plain JSON types."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _to_numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().float().cpu().numpy()
    return np.asarray(value)


def save_result(result: EncodingResult, path, *, profile: str, seed: int, extra: dict | None = None) -> Path:
    """Write one result to a compressed ``.npz`` (atomically: temp file, then rename). Returns the path.

    Arrays: ``test_r``, ``noise_ceiling``, ``oracle_ceiling`` (float32, shape (V,)), ``predictions``
    (float16, (N_test, V)). ``meta``: JSON with the key fields, ``result.info`` (provenance) and
    ``extra``, plus each array's shape, dtype and SHA-256. Arrays in ``result.info`` (such as the
    learned ``voxel_weights``) are stored as float32 arrays named ``info.<key>``.
    """
    arrays = {}
    for key, dtype in _ARRAY_DTYPES.items():
        value = getattr(result, key)
        if value is not None:
            arrays[key] = np.ascontiguousarray(np.asarray(value), dtype=dtype)
    info = {}
    for key, value in result.info.items():  # per-voxel arrays in info (e.g. voxel_weights) go in as arrays
        if hasattr(value, "shape") and getattr(value, "ndim", 0) >= 1:
            arrays[f"info.{key}"] = np.ascontiguousarray(_to_numpy(value), dtype=np.float32)
        else:
            info[key] = value
    meta = {
        "format": RESULTS_FORMAT, "dataset": result.dataset, "subject": int(result.subject), "roi": result.roi,
        "model": result.model, "profile": profile, "seed": int(seed), "n_voxels": result.n_voxels,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "info": _jsonable(info), **_jsonable(extra or {}),
        "arrays": {k: {"shape": list(a.shape), "dtype": str(a.dtype), "sha256": _sha256(a)} for k, a in arrays.items()},
    }
    path = Path(path)
    with atomic_write(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, meta=np.array(json.dumps(meta)), **arrays)
    return path


def read_meta(path) -> dict:
    """The JSON metadata of a results file (raises :class:`CorruptResultError` if unreadable)."""
    return _read(Path(path))[0]


def _read(path: Path):
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as err:
        raise CorruptResultError(f"{path.name}: not a readable .npz file ({type(err).__name__}: {err})") from err
    if "meta" not in data:
        raise CorruptResultError(f"{path.name}: no 'meta' entry")
    try:
        meta = json.loads(str(data.pop("meta")))
    except json.JSONDecodeError as err:
        raise CorruptResultError(f"{path.name}: metadata is not valid JSON ({err})") from err
    if not isinstance(meta, dict) or meta.get("format") != RESULTS_FORMAT:
        raise CorruptResultError(f"{path.name}: unknown results format {meta.get('format') if isinstance(meta, dict) else meta!r}")
    return meta, data


def load_result(path, expect: dict | None = None) -> EncodingResult:
    """Read and verify a results file written by :func:`save_result`.

    Checks: the file opens, ``meta`` is JSON of this format, every array listed is present with its
    recorded shape, dtype and SHA-256 and no other array is, ``test_r`` is ``(V,)`` with V =
    ``n_voxels``, ceilings are ``(V,)``, predictions are ``(N, V)`` and all are finite. ``expect``
    (e.g. ``{"roi": "V1", "n_voxels": 500, "dataset_fingerprint": ...}``) must match ``meta``.
    Raises :class:`CorruptResultError` saying what is wrong.
    """
    path = Path(path)
    meta, data = _read(path)
    listed = meta.get("arrays") or {}
    if set(listed) != set(data) or "test_r" not in data:
        raise CorruptResultError(f"{path.name}: arrays {sorted(data)} do not match the metadata's {sorted(listed)}")
    for key, arr in data.items():
        want = listed[key]
        if list(arr.shape) != want.get("shape") or str(arr.dtype) != want.get("dtype"):
            raise CorruptResultError(f"{path.name}: array '{key}' is {arr.dtype}{list(arr.shape)}, "
                                     f"metadata says {want.get('dtype')}{want.get('shape')}")
        if _sha256(arr) != want.get("sha256"):
            raise CorruptResultError(f"{path.name}: array '{key}' does not match its SHA-256 checksum")
        if key in _ARRAY_DTYPES and not np.all(np.isfinite(arr)):
            raise CorruptResultError(f"{path.name}: array '{key}' holds NaN or inf")
    n_vox = meta.get("n_voxels")
    for key in ("test_r", "noise_ceiling", "oracle_ceiling"):
        if key in data and data[key].shape != (n_vox,):
            raise CorruptResultError(f"{path.name}: '{key}' has shape {data[key].shape}, expected ({n_vox},)")
    if "predictions" in data and (data["predictions"].ndim != 2 or data["predictions"].shape[1] != n_vox):
        raise CorruptResultError(f"{path.name}: predictions have shape {data['predictions'].shape}, expected (N_test, {n_vox})")
    for key, value in (expect or {}).items():
        if meta.get(key) != value:
            raise CorruptResultError(f"{path.name}: {key} is {meta.get(key)!r}, expected {value!r}")
    info = dict(meta.get("info") or {})
    info.update({k[len("info."):]: v for k, v in data.items() if k.startswith("info.")})
    info.update({k: meta[k] for k in ("profile", "seed", "created_utc", "dataset_fingerprint") if k in meta})
    info["results_file"] = str(path)
    as32 = {k: data[k].astype(np.float32) for k in data if not k.startswith("info.")}
    return EncodingResult(model=meta["model"], roi=meta["roi"], dataset=meta["dataset"], subject=int(meta["subject"]),
                          test_r=as32["test_r"], noise_ceiling=as32.get("noise_ceiling"),
                          oracle_ceiling=as32.get("oracle_ceiling"), predictions=as32.get("predictions"), info=info)


def collect_results(out) -> list:
    """Every valid results file under ``out/results`` (corrupt ones are skipped with a warning).

    Sorted by dataset, profile, subject, seed, then ROI in visual-hierarchy order (V1 ... LO) and
    model in the order of ``ablations.VARIANTS``.
    """
    from .ablations import VARIANTS
    from .data.dataset import DEFAULT_ROIS

    results = []
    for path in sorted((Path(out) / "results").glob("*.npz")):
        try:
            results.append(load_result(path))
        except CorruptResultError as err:
            warnings.warn(f"skipping corrupt results file: {err}", stacklevel=2)
    rois, models = list(DEFAULT_ROIS), list(VARIANTS)

    def key(res):
        return (res.dataset, str(res.info.get("profile")), res.subject, res.info.get("seed") or 0,
                rois.index(res.roi) if res.roi in rois else len(rois), res.roi,
                models.index(res.model) if res.model in models else len(models), res.model)

    return sorted(results, key=key)


# --------------------------------------------------------------------------- tables
def table_rows(results) -> list:
    """One flat row per result (:meth:`EncodingResult.summary` plus profile, seed, wall time, device)."""
    rows = []
    for res, summary in zip(results, summary_table(results)):
        summary.update({"profile": res.info.get("profile"), "seed": res.info.get("seed"),
                        "wall_time_s": res.info.get("wall_time_s"), "device": res.info.get("device")})
        ordered = {key: summary.get(key) for key in TABLE_COLUMNS}   # the usual columns first, in order
        ordered.update(summary)
        rows.append(_jsonable(ordered))
    return rows


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def markdown_table(rows) -> str:
    """The comparison table in Markdown, one section per (dataset, profile, subject, seed)."""
    shown = ["roi", "model", "n_voxels", "median_r", "mean_r", "top300_mean_r", "n_significant", "frac_ceiling",
             "frac_oracle_ceiling", "wall_time_s"]
    lines, groups = [], {}
    for row in rows:
        groups.setdefault((row["dataset"], row["profile"], row["subject"], row["seed"]), []).append(row)
    for (dataset, profile, subject, seed), group in groups.items():
        devices = sorted({str(r["device"]) for r in group if r.get("device")})
        lines += [f"### {dataset}, subject {subject}, profile {profile}, seed {seed}"
                  + (f" (device: {', '.join(devices)})" if devices else ""), "",
                  "| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
        lines += ["| " + " | ".join(_fmt(r.get(k)) for k in shown) + " |" for r in group]
        lines.append("")
    return "\n".join(lines)


def write_table(results, out) -> dict:
    """Write ``table.md``, ``table.csv`` and ``table.json`` (a list of rows) under ``out``. Returns the paths."""
    out = Path(out)
    rows = table_rows(results)
    paths = {"md": out / "table.md", "csv": out / "table.csv", "json": out / "table.json"}
    with atomic_write(paths["md"]) as tmp:
        tmp.write_text(markdown_table(rows))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else TABLE_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_write(paths["csv"]) as tmp:
        tmp.write_text(buffer.getvalue())
    with atomic_write(paths["json"]) as tmp:
        tmp.write_text(json.dumps(rows, indent=1))
    return paths


def compare_to_best_two_step(results, dataset, reference: str = "etecrm", n_bootstrap: int = 2000, seed: int = 0) -> list:
    """Paired bootstrap per ROI: ``reference`` minus the two-step model with the best median r.

    Returns a list of dicts (:class:`evaluation.Comparison` fields) for every ROI where both exist.
    Needs the measured test responses, hence the dataset.
    """
    from .ablations import VARIANTS

    comparisons = []
    by_roi = {}
    for res in results:
        by_roi.setdefault(res.roi, {})[res.model] = res
    for roi, models in by_roi.items():
        two_step = [m for m in models if m != reference and m in VARIANTS and VARIANTS[m].family == "two_step"]
        if reference not in models or not two_step or roi not in dataset.test.responses:
            continue
        best = max(two_step, key=lambda m: float(np.median(models[m].test_r)))
        for statistic in ("median_r", "top_n_mean_r"):
            cmp = paired_bootstrap(models[reference], models[best], dataset.test.responses[roi], statistic=statistic,
                                   n_bootstrap=n_bootstrap, seed=seed)
            comparisons.append({"dataset": dataset.name, "subject": dataset.subject, "profile": models[reference].info.get("profile"),
                                **_jsonable(vars(cmp))})
    return comparisons


def save_comparisons(out, comparisons, dataset: str, subject: int, profile: str) -> Path:
    """Write one run's comparisons to ``out/comparisons/<dataset>_<profile>_sub<subject>.json``.

    One file per run, so that runs of other subjects into the same folder (even at the same time)
    never overwrite each other's; :func:`rebuild_outputs` merges them into ``out/comparisons.json``.
    """
    path = Path(out) / "comparisons" / f"{dataset}_{profile}_sub{subject}.json"
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(comparisons, indent=1))
    return path


def load_comparisons(out) -> list:
    """All comparisons under ``out/comparisons/`` (unreadable files are skipped with a warning)."""
    merged = []
    for path in sorted((Path(out) / "comparisons").glob("*.json")):
        try:
            merged += json.loads(path.read_text())
        except json.JSONDecodeError as err:
            warnings.warn(f"skipping unreadable comparisons file {path}: {err}", stacklevel=2)
    return merged


# --------------------------------------------------------------------------- figures
def _find_browser() -> None:
    """Point kaleido (plotly's PNG export) at Debian's Chromium if no browser was configured."""
    if not os.environ.get("BROWSER_PATH"):
        for candidate in ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"):
            if Path(candidate).exists():
                os.environ["BROWSER_PATH"] = candidate
                break


def write_figures(results, out, comparisons=()) -> list:
    """Interactive HTML figures (and PNG copies when kaleido and Chromium work) under ``out/figures``.

    Per (dataset, profile, subject): median r per ROI and model, mean r of the top-N voxels (with a
    slider over N), both from :func:`plots.roi_bars`, and the paired bootstrap differences
    (:func:`plots.comparison_bars`) of ``comparisons`` (``evaluation.Comparison`` objects).
    Returns a list of notes (what was written, what was skipped and why); never raises for a missing
    plotting stack: the tables are the results, figures are a convenience.
    """
    try:
        import plotly  # noqa: F401
    except ImportError:
        return ["figures skipped: plotly is not installed (pip install plotly kaleido); tables were written"]
    from . import plots

    figdir = Path(out) / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    _find_browser()
    groups = {}
    for res in results:
        groups.setdefault((res.dataset, res.info.get("profile"), res.subject), []).append(res)
    figures = {}
    for (dataset, profile, subject), group in groups.items():
        label = f"{dataset} ({profile} profile), subject {subject}"
        stem = f"{dataset}_{profile}_sub{subject}"
        for statistic in ("median_r", "top_n_mean_r"):
            fig = plots.roi_bars(group, statistic)
            fig.update_layout(title=f"{label}: {fig.layout.title.text}")
            figures[f"{stem}_{statistic}"] = fig
        mine = [c for c in comparisons if c.get("statistic") == "median_r"
                and (c.get("dataset"), c.get("subject"), c.get("profile")) == (dataset, subject, profile)]
        if mine:
            fig = plots.comparison_bars([Comparison(**{k: c[k] for k in Comparison.__dataclass_fields__}) for c in mine])
            fig.update_layout(title=f"{label}: {fig.layout.title.text}")
            figures[f"{stem}_bootstrap"] = fig
    notes, png_ok = [], True
    for stem, fig in figures.items():
        with atomic_write(figdir / f"{stem}.html") as tmp:
            fig.write_html(tmp, include_plotlyjs="cdn")
        notes.append(f"wrote {figdir / (stem + '.html')}")
        if png_ok:
            try:
                with atomic_write(figdir / f"{stem}.png") as tmp:
                    fig.write_image(tmp, format="png", width=1000, height=500)
                notes.append(f"wrote {figdir / (stem + '.png')}")
            except Exception as err:  # kaleido needs Chrome/Chromium; a missing browser must not end the run
                png_ok = False
                first_line = str(err).splitlines()[0] if str(err) else ""
                notes.append(f"PNG export failed ({type(err).__name__}: {first_line}); the HTML figures were written. "
                             "For PNGs install Chromium (apt-get install chromium) or set BROWSER_PATH")
    return notes


# --------------------------------------------------------------------------- the whole run
def _load(dataset, subject: int, profile: str, data_seed: int = 0, data_root=None):
    """An EncodingDataset from a name ('sim', 'vim1', 'miyawaki', ...), a saved ``.npz`` path, or as is."""
    from .data.dataset import EncodingDataset, load_npz

    if isinstance(dataset, EncodingDataset):
        return dataset
    if str(dataset).endswith(".npz"):
        return load_npz(dataset)
    from .data import load_dataset

    kwargs = {"root": data_root} if data_root else {}
    return load_dataset(str(dataset), subject=subject, profile=profile, seed=data_seed, **kwargs)


def _weights_expectation(model: str, cnn_weights) -> dict:
    """What a results file must record about the CNN weights: only models built on CNN features care."""
    from .ablations import get_variant

    if get_variant(model).options.get("features") == "alexnet":
        return {"cnn_weights": _jsonable(cnn_weights if cnn_weights is None else str(cnn_weights))}
    return {}


def _clean_partial_files(results_dir: Path, prefix: str) -> int:
    """Delete temp files a killed run left (``.<prefix>*.part``); other runs' files are left alone.

    Only this (dataset, profile, subject)'s files match ``prefix``, so that runs of other subjects
    into the same folder, even at the same time, are safe. Returns how many were deleted.
    """
    n = 0
    for part in results_dir.glob(f".{prefix}*.part"):
        part.unlink(missing_ok=True)
        n += 1
    return n


def reproduce(dataset="sim", subject: int = 1, profile: str = "quick", seed: int = 0, models=None, rois=None,
              out="results", device=None, figures: bool = True, data_root=None, data_seed: int = 0,
              cnn_weights=None, n_bootstrap: int = 2000, progress: bool = True, log=print) -> list:
    """Run every model on every ROI, one results file each, resumable; then tables and figures.

    Parameters
    ----------
    dataset : "sim", "vim1", "miyawaki" (see ``data.load_dataset``), a path to a dataset ``.npz``
        written by ``data.save_npz``, or an ``EncodingDataset``.
    subject, profile, seed : which subject, ``"quick"`` or ``"full"``, and the seed of every model
        (initial weights, validation split, batch order, noise).
    models : list of variant names (default: all of ``ablations.DEFAULT_VARIANTS``).
    rois : list of ROI names (default: all of the dataset's).
    out : output folder (created). Finished results in it are reused, corrupt ones recomputed.
    device : torch device (default: ``device.get_device()``).
    figures : write plotly figures (skipped with a note if plotly is missing).
    data_root : folder of downloaded real data; data_seed : the simulation's seed (``sim`` only;
        the default 0 is the book's simulated subject; it is not the models' seed).
    cnn_weights : weights of ``alexnet_ridge``'s CNN: None (untrained, no download), "DEFAULT"
        (ImageNet, downloaded once) or a ``.pth`` path; recorded in its results files.
    log : where progress messages go (``print``; pass ``lambda *a: None`` for silence).

    Returns the list of :class:`EncodingResult` of this run (ROI-major, in ``models`` order).
    Interrupting (Ctrl-C) raises ``KeyboardInterrupt`` after the files already finished are on disk.
    """
    from tqdm.auto import tqdm

    from . import ablations
    from .device import describe_device, get_device

    out = Path(out)
    results_dir = out / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    models = list(models or ablations.DEFAULT_VARIANTS)
    for name in models:
        ablations.get_variant(name)
    device = get_device(device)
    data = _load(dataset, subject, profile, data_seed, data_root)
    rois = list(rois or data.rois)
    for roi in rois:
        data.check_roi(roi)
    if _clean_partial_files(results_dir, f"{data.name}_{profile}_sub{data.subject}_"):
        log(f"removed partial files left by an interrupted run in {results_dir}")
    prov = provenance() | {"device": describe_device(device)}
    units = ablations.plan_units(models)
    log(f"etecrm reproduce: {data.name} subject {data.subject}, profile {profile}, seed {seed}, device {prov['device']}, "
        f"{len(rois)} ROIs x {len(models)} models -> {results_dir}")

    done = {}
    bar = tqdm(total=len(rois) * len(models), desc="reproduce", unit="model", disable=not progress)
    try:
        for roi in rois:
            fingerprint = dataset_fingerprint(data, roi)
            expect_base = {"dataset": data.name, "subject": data.subject, "roi": roi, "profile": profile, "seed": seed,
                           "n_voxels": data.n_voxels(roi), "dataset_fingerprint": fingerprint}
            for unit in units:
                paths = {m: result_path(out, data.name, profile, data.subject, roi, m, seed) for m in unit}
                expect = {m: expect_base | {"model": m} | _weights_expectation(m, cnn_weights) for m in unit}
                missing = []
                for m, path in paths.items():
                    if not path.exists():
                        missing.append(m)
                        continue
                    try:
                        done[(roi, m)] = load_result(path, expect[m])
                    except CorruptResultError as err:
                        log(f"results file {err}; recomputing it")
                        missing.append(m)
                if not missing:
                    bar.update(len(unit))
                    continue
                bar.set_postfix_str(f"{roi}: {', '.join(unit)}")
                # A unit is trained as a whole (ETECRM variants train batched), so that a resumed run
                # computes exactly what an uninterrupted one would; only the missing files are written.
                for res in ablations.run_unit(data, unit, roi, profile=profile, seed=seed, device=device,
                                              progress=progress, cnn_weights=cnn_weights):
                    res.info.update(prov)
                    res.info.update({"profile": profile, "seed": seed, "dataset_fingerprint": fingerprint})
                    if res.model in missing:
                        save_result(res, paths[res.model], profile=profile, seed=seed,
                                    extra={"dataset_fingerprint": fingerprint, "cnn_weights": _jsonable(cnn_weights)})
                        res = load_result(paths[res.model], expect[res.model])
                    done[(roi, res.model)] = res
                bar.update(len(unit))
            roi_rows = summary_table([done[(roi, m)] for m in models])
            best = max(roi_rows, key=lambda r: r["median_r"])
            (tqdm.write if log is print else log)(
                f"{roi} median r: " + ", ".join(f"{r['model']} {r['median_r']:.3f}" for r in roi_rows)
                + f" (best: {best['model']})")
    finally:
        bar.close()

    results = [done[(roi, m)] for roi in rois for m in models]
    save_comparisons(out, compare_to_best_two_step(results, data, n_bootstrap=n_bootstrap, seed=seed),
                     data.name, data.subject, profile)
    rebuild_outputs(out, figures=figures, log=log)
    return results


def rebuild_outputs(out, figures: bool = True, log=print) -> list:
    """Write the table (md, csv, json) and figures from every valid results file under ``out``.

    Needs no dataset and trains nothing (``etecrm table``): use it after copying results files from
    another machine, e.g. a GPU run whose figures were skipped. The bootstrap comparisons are merged
    from ``out/comparisons/*.json`` (written by :func:`reproduce`, which has the data) into
    ``out/comparisons.json``. Returns the results.
    """
    out = Path(out)
    everything = collect_results(out)
    if not everything:
        raise FileNotFoundError(f"no results files under {out / 'results'}; run `etecrm reproduce --out {out}` first")
    paths = write_table(everything, out)
    comparisons = load_comparisons(out)
    with atomic_write(out / "comparisons.json") as tmp:
        tmp.write_text(json.dumps(comparisons, indent=1))
    log(f"wrote {paths['md']}, {paths['csv']}, {paths['json']} ({len(everything)} results in {out}) "
        f"and comparisons.json ({len(comparisons)} bootstrap comparisons)")
    if figures:
        for note in write_figures(everything, out, comparisons):
            log(note)
    return everything
