"""Results files: one verified ``.npz`` per :class:`ResultKey`: what was fitted, on what, what seed.

Written by :mod:`etecrm_lib.runs` (the one runner, used by every experiment), read by
:mod:`etecrm_lib.tables` and the book. This module imports no model code: everything it needs
(family, display order) is recorded in the files. Layout of an output folder ``OUT``::

    OUT/results/<tag>_<profile>_sub<subject>_<roi>_<model>[_<extras>]_seed<seed>.npz  a model seed
    OUT/ensembles/<tag>_<profile>_sub<subject>_<roi>_<model>_seeds<set>.npz      seed ensemble
    OUT/comparisons/<tag>_<profile>_sub<subject>_<a>_seeds<set>_vs_<b>_seeds<set>.json

``<tag>`` names the data: ``sim-data<S>`` for the simulated cortex made with simulation seed S
(runs on different simulated cortices never share a file), the dataset name alone for real data.
``<extras>`` are what an experiment adds to a result's identity (:data:`EXTRA_LABELS`), e.g.
``n500`` (trained on the first 500 train images) or ``truth-gabor`` (a control cortex).
``<set>`` is a seed set: ``0-4`` (seeds 0 to 4), ``3`` or ``0+2+7``. Models that are deterministic
(``gwp_ridge``: Gabor features and ridge have nothing random) are run once, stored as seed 0.

A results file is a compressed ``.npz`` holding the per-voxel arrays (``test_r``, ``noise_ceiling``,
``oracle_ceiling`` in float32; the test ``predictions`` in float32 (float16 overflowed for networks
that predict in large units), enough for bootstrap comparisons and seed ensembles; per-voxel arrays
of ``info`` such as ``val_r`` as ``info.<key>``) and ``meta``, a JSON string: the key's fields,
library version, git commit, configuration, device, wall time and a SHA-256 of every array. A file
whose arrays, checksums, shapes or metadata do not match what a run expects is reported as corrupt
and recomputed, never used.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .evaluation import EncodingResult
from .storage import CorruptFileError, atomic_write, check_name, jsonable, read_npz, seeds_label

RESULTS_FORMAT = 2
"""2: data seed and seed sets recorded. Files of format 1 (no data seed) are still read."""
READABLE_FORMATS = (1, 2)
_ARRAY_DTYPES = {
    "test_r": np.float32,
    "noise_ceiling": np.float32,
    "oracle_ceiling": np.float32,
    "predictions": np.float32,
}
DISPLAY_ORDER = (
    "etecrm",
    "etecrm_unweighted",
    "etecrm_no_noise",
    "etecrm_signed",
    "etecrm_mse",
    "gwp_ridge",
    "alexnet_ridge",
    "gwp_roiwise",
)
"""The order of the book's models in tables (the registry's order: a test checks they agree).
Other models follow, by name; a renamed result (``alexnet_ridge_untrained``) sorts by the
variant it records (``info["variant"]``)."""
ROI_ORDER = ("V1", "V2", "V3", "V4", "LO")
"""The order of ROIs in tables (``data.DEFAULT_ROIS``: a test checks they agree); others follow."""
EXTRA_LABELS = {"n_train": "n", "ground_truth": "truth-"}
"""How an experiment's extra key fields appear in file names: ``n_train=500`` -> ``n500``; a name
not listed here appears as ``<name>-<value>``."""


class OtherInputsError(ValueError):
    """A results file that verifies but holds the result of other inputs than a run's (another
    dataset of the same name, other CNN weights...): never overwritten; the run is refused."""


class CorruptResultError(CorruptFileError):
    """A results file that cannot be trusted (truncated, bad JSON, wrong shape, bad checksum...)."""


# --------------------------------------------------------------------------- names
def dataset_tag(dataset: str, data_seed: int | None = None) -> str:
    """``"sim-data3"`` for simulation seed 3; the dataset name alone for real data (``data_seed``
    None)."""
    return str(dataset) if data_seed is None else f"{dataset}-data{int(data_seed)}"


MAX_SEED = 2**31 - 1
"""The largest seed (model or simulation seed) accepted where seeds enter: 0 .. 2**31 - 1."""


@dataclass(frozen=True)
class ResultKey:
    """The identity of one result: which data, which profile, ROI and model, which model seed.

    ``simulation_seed``: the seed of the simulated cortex (None for real data); files store it
    as ``data_seed`` (their format predates the name).
    ``extras``: what an experiment adds, as sorted ``(name, value)`` pairs, e.g. ``(("n_train",
    500),)`` for the data-size curves or ``(("ground_truth", "gabor"),)`` for a control cortex
    (:meth:`make` takes them as keywords). The key gives the file name (:meth:`path`) and the
    fields a file's ``meta`` must hold (:meth:`fields`); two results with different keys never
    share a file.
    """

    dataset: str
    simulation_seed: int | None
    profile: str
    subject: int
    roi: str
    model: str
    seed: int
    extras: tuple = ()

    @classmethod
    def make(
        cls, dataset, simulation_seed, profile, subject, roi, model, seed, **extras
    ) -> "ResultKey":
        """A key with ``extras`` given as keywords (None values are left out)."""
        pairs = tuple(sorted((k, v) for k, v in extras.items() if v is not None))
        sim = None if simulation_seed is None else int(simulation_seed)
        return cls(str(dataset), sim, str(profile), int(subject), roi, model, int(seed), pairs)

    def __post_init__(self):
        for what in ("dataset", "profile", "roi", "model"):
            check_name(getattr(self, what), f"a result's {what}")  # the one name rule (storage)

    @classmethod
    def from_meta(cls, meta: dict) -> "ResultKey":
        """The key a results file's ``meta`` records (a per-seed file; extras: the
        :data:`EXTRA_LABELS` fields it holds). Its :meth:`stem` is the file's name."""
        extras = {name: meta[name] for name in EXTRA_LABELS if meta.get(name) is not None}
        fields = ("dataset", "data_seed", "profile", "subject", "roi", "model", "seed")
        return cls.make(*(meta.get(name) for name in fields), **extras)

    def extra(self, name: str, default=None):
        """The value of one extra key field (``default`` if the key has none)."""
        return dict(self.extras).get(name, default)

    def fields(self) -> dict:
        """What a results file's ``meta`` records about its key (and must match when read)."""
        return {
            "dataset": self.dataset,
            "data_seed": self.simulation_seed,
            "subject": self.subject,
            "roi": self.roi,
            "profile": self.profile,
            "seed": self.seed,
            "model": self.model,
            **dict(self.extras),
        }

    def stem(self) -> str:
        """The file name without ``.npz``: ``sim-data0_full_sub1_V1_etecrm_n500_seed3``."""
        extras = "".join(
            f"_{EXTRA_LABELS.get(name, name + '-')}{value}" for name, value in self.extras
        )
        return (
            f"{dataset_tag(self.dataset, self.simulation_seed)}_{self.profile}_sub{self.subject}_"
            f"{self.roi}_{self.model}{extras}_seed{self.seed}"
        )

    def path(self, out) -> Path:
        """Where this result's file lives under the output folder ``out``."""
        return Path(out) / "results" / f"{self.stem()}.npz"

    def data_group(self) -> tuple:
        """Keys that share this tuple are fitted on one dataset and ROI (a trainer's group)."""
        return (
            self.dataset,
            self.simulation_seed,
            self.profile,
            self.subject,
            self.extras,
            self.roi,
        )


def result_path(
    out,
    dataset: str,
    profile: str,
    subject: int,
    roi: str,
    model: str,
    seed: int,
    data_seed: int | None = None,
) -> Path:
    """Where the results file of one model seed lives under ``out`` (:meth:`ResultKey.path`)."""
    return ResultKey.make(dataset, data_seed, profile, subject, roi, model, seed).path(out)


def ensemble_path(
    out,
    dataset: str,
    profile: str,
    subject: int,
    roi: str,
    model: str,
    seeds,
    data_seed: int | None = None,
) -> Path:
    """Where the seed ensemble (predictions averaged over ``seeds``) goes under ``out`` (names
    checked: ``storage.check_name``)."""
    for what, name in (("dataset", dataset), ("ROI", roi), ("model", model)):
        check_name(name, f"the {what} name")
    tag = dataset_tag(dataset, data_seed)
    stem = f"{tag}_{profile}_sub{subject}_{roi}_{model}_seeds{seeds_label(seeds)}"
    return Path(out) / "ensembles" / f"{stem}.npz"


# --------------------------------------------------------------------------- writing
def array_sha256(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


def _to_numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().float().cpu().numpy()
    return np.asarray(value)


def save_result(
    result: EncodingResult, path, *, profile: str, seed: int | None, extra: dict | None = None
) -> Path:
    """Write one result to a compressed ``.npz`` (atomically: temp file, then rename). Returns the
    path.

    Arrays: ``test_r``, ``noise_ceiling``, ``oracle_ceiling`` (float32, shape (V,)), ``predictions``
    (float32, (N_test, V)); per-voxel arrays of ``result.info`` (e.g. ``val_r``) as float32
    ``info.<key>``. ``meta``: JSON with the key fields, the rest of ``result.info`` and ``extra``
    (e.g. ``data_seed``, ``seeds`` of an ensemble), plus each array's shape, dtype and SHA-256.
    ``seed`` is None for a seed ensemble.
    """
    arrays = {}
    for key, dtype in _ARRAY_DTYPES.items():
        value = getattr(result, key)
        if value is not None:
            arrays[key] = np.ascontiguousarray(np.asarray(value), dtype=dtype)
    info = {}
    for key, value in result.info.items():
        if hasattr(value, "shape") and getattr(value, "ndim", 0) >= 1:
            arrays[f"info.{key}"] = np.ascontiguousarray(_to_numpy(value), dtype=np.float32)
        else:
            info[key] = value
    meta = {
        "format": RESULTS_FORMAT,
        "dataset": result.dataset,
        "subject": int(result.subject),
        "roi": result.roi,
        "model": result.model,
        "profile": profile,
        "seed": None if seed is None else int(seed),
        "n_voxels": result.n_voxels,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "info": jsonable(info),
        **jsonable(extra or {}),
        "arrays": {
            k: {"shape": list(a.shape), "dtype": str(a.dtype), "sha256": array_sha256(a)}
            for k, a in arrays.items()
        },
    }
    path = Path(path)
    with atomic_write(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, meta=np.array(json.dumps(meta)), **arrays)
    return path


# --------------------------------------------------------------------------- reading
def read_meta(path) -> dict:
    """The JSON metadata of a results file (raises :class:`CorruptResultError` if unreadable)."""
    return _read(Path(path))[0]


_META_FIELDS = {"model": str, "roi": str, "dataset": str, "subject": int, "n_voxels": int}
MAX_META_CHARS = 1 << 20


def _meta_of(path: Path, headers: dict, read) -> dict:
    """The metadata (JSON) of a results file, checked: a known format and the key fields' types."""
    shape, dtype = headers.get("meta", (None, None))
    if shape != () or dtype.kind != "U" or dtype.itemsize > 4 * MAX_META_CHARS:
        raise CorruptResultError(f"{path.name}: no readable 'meta' entry")
    try:
        meta = json.loads(str(read("meta")))
    except (ValueError, RecursionError) as err:
        raise CorruptResultError(f"{path.name}: metadata is not valid JSON ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") not in READABLE_FORMATS:
        raise CorruptResultError(
            f"{path.name}: unknown results format "
            f"{meta.get('format') if isinstance(meta, dict) else meta!r}"
        )
    for key, kind in _META_FIELDS.items():
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
            raise CorruptResultError(f"{path.name}: metadata field {key!r} is {meta.get(key)!r}")
    for key in ("dataset", "roi", "model"):  # parts of paths (figures): the name rule on read too
        try:
            check_name(meta[key], f"its {key}")
        except ValueError as err:
            raise CorruptResultError(f"{path.name}: {err}") from None
    if not isinstance(meta.get("arrays"), dict) or not all(
        isinstance(v, dict) for v in meta["arrays"].values()
    ):
        raise CorruptResultError(f"{path.name}: metadata lists no arrays")
    return meta


def _read(path: Path):
    """``(meta, arrays)`` of a results file; every array's shape and dtype are checked against the
    metadata from the ``.npy`` headers, before anything is inflated (:func:`storage.read_npz`)."""
    found = {}

    def check(headers, read):
        meta = found["meta"] = _meta_of(path, headers, read)
        listed = meta["arrays"]
        arrays = {k: v for k, v in headers.items() if k != "meta"}
        if set(listed) != set(arrays) or "test_r" not in arrays:
            raise CorruptResultError(
                f"{path.name}: arrays {sorted(arrays)} do not match the metadata's {sorted(listed)}"
            )
        for key, (shape, dtype) in arrays.items():
            want = listed[key]
            if list(shape) != want.get("shape") or str(dtype) != want.get("dtype"):
                raise CorruptResultError(
                    f"{path.name}: array '{key}' is {dtype}{list(shape)}, "
                    f"metadata says {want.get('dtype')}{want.get('shape')}"
                )

    try:
        data = read_npz(path, "results file", check, "it is recomputed by the next run")
    except CorruptResultError:
        raise
    except CorruptFileError as err:
        raise CorruptResultError(str(err)) from None
    data.pop("meta")
    return found["meta"], data


def _check_arrays(path: Path, meta: dict, data: dict) -> None:
    """Every listed array present with its shape, dtype and checksum; per-voxel shapes agree;
    finite."""
    listed = meta.get("arrays") or {}
    if set(listed) != set(data) or "test_r" not in data:
        raise CorruptResultError(
            f"{path.name}: arrays {sorted(data)} do not match the metadata's {sorted(listed)}"
        )
    for key, arr in data.items():
        want = listed[key]
        if list(arr.shape) != want.get("shape") or str(arr.dtype) != want.get("dtype"):
            raise CorruptResultError(
                f"{path.name}: array '{key}' is {arr.dtype}{list(arr.shape)}, "
                f"metadata says {want.get('dtype')}{want.get('shape')}"
            )
        if array_sha256(arr) != want.get("sha256"):
            raise CorruptResultError(
                f"{path.name}: array '{key}' does not match its SHA-256 checksum"
            )
        if key in _ARRAY_DTYPES and not np.all(np.isfinite(arr)):
            raise CorruptResultError(f"{path.name}: array '{key}' holds NaN or inf")
    n_vox = meta.get("n_voxels")
    for key in ("test_r", "noise_ceiling", "oracle_ceiling"):
        if key in data and data[key].shape != (n_vox,):
            raise CorruptResultError(
                f"{path.name}: '{key}' has shape {data[key].shape}, expected ({n_vox},)"
            )
    if "predictions" in data and (
        data["predictions"].ndim != 2 or data["predictions"].shape[1] != n_vox
    ):
        raise CorruptResultError(
            f"{path.name}: predictions have shape {data['predictions'].shape}, expected "
            f"(N_test, {n_vox})"
        )


def strip_predictions(out) -> int:
    """Rewrite every results and ensemble file under ``out`` without its test ``predictions``;
    returns how many.

    For committing results to a repository: the per-voxel scores, ceilings and validation r stay,
    and the seed ensembles and bootstrap comparisons, already computed from the predictions, stay
    in their own files. ``meta["predictions_stripped"]`` says so; a run that needs the predictions
    (new ensembles or comparisons) recomputes nothing from such files and says why.
    """
    n = 0
    for path in sorted(Path(out).glob("*/*.npz")):
        meta, data = _read(path)
        _check_arrays(path, meta, data)
        if "predictions" not in data:
            continue
        del data["predictions"]
        meta["arrays"].pop("predictions")
        meta["predictions_stripped"] = True
        with atomic_write(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, meta=np.array(json.dumps(meta)), **data)
        n += 1
    return n


def load_result(path, expect: dict | None = None) -> EncodingResult:
    """Read and verify a results (or ensemble) file written by :func:`save_result`.

    Checks: the file opens, ``meta`` is JSON of a known format, every array listed is present with
    its recorded shape, dtype and SHA-256 and no other array is, ``test_r`` is ``(V,)`` with V =
    ``n_voxels``, ceilings are ``(V,)``, predictions are ``(N, V)`` and all are finite. ``expect``
    (e.g. ``{"roi": "V1", "data_seed": 0, "dataset_fingerprint": ...}``) must match ``meta``.
    Raises :class:`CorruptResultError` saying what is wrong. ``info`` of the result gets
    ``profile``, ``seed``, ``data_seed``, ``seeds`` (ensembles), ``results_file`` and the rest of
    meta's info.
    """
    return _load(Path(path), expect)[0]


def _load(path: Path, expect: dict | None) -> tuple:
    """``(EncodingResult, meta)`` of a results file (see :func:`load_result`)."""
    meta, data = _read(path)
    _check_arrays(path, meta, data)
    differ = {k: (meta.get(k), v) for k, v in (expect or {}).items() if meta.get(k) != v}
    if differ:
        raise OtherInputsError(
            f"{path} holds a result of other inputs than this run's ("
            + "; ".join(f"{k}: {a!r} in the file, {b!r} now" for k, (a, b) in differ.items())
            + "): refusing to overwrite it. Use another --out, or give the dataset another name"
        )
    info = dict(meta.get("info") or {})
    info.update({k[len("info.") :]: v for k, v in data.items() if k.startswith("info.")})
    info.update(
        {
            k: meta[k]
            for k in (
                "profile",
                "seed",
                "seeds",
                "ensemble",
                "deterministic",
                "created_utc",
                "dataset_fingerprint",
            )
            if k in meta
        }
    )
    info["data_seed"] = meta.get("data_seed")
    info["results_file"] = str(path)
    as32 = {k: data[k].astype(np.float32) for k in data if not k.startswith("info.")}
    result = EncodingResult(
        model=meta["model"],
        roi=meta["roi"],
        dataset=meta["dataset"],
        subject=int(meta["subject"]),
        test_r=as32["test_r"],
        noise_ceiling=as32.get("noise_ceiling"),
        oracle_ceiling=as32.get("oracle_ceiling"),
        predictions=as32.get("predictions"),
        info=info,
    )
    return result, meta


def model_order(res: EncodingResult) -> int:
    """A result's place: :data:`DISPLAY_ORDER`, by the variant it records; else last."""
    name = res.info.get("variant") or res.model
    return DISPLAY_ORDER.index(name) if name in DISPLAY_ORDER else len(DISPLAY_ORDER)


def result_key(res: EncodingResult) -> tuple:
    """Sort key: dataset, data seed, profile, subject, ROI (V1 ... LO), model (:func:`model_order`),
    seed."""
    rois = list(ROI_ORDER)
    data_seed = res.info.get("data_seed")
    return (
        res.dataset,
        -1 if data_seed is None else data_seed,
        str(res.info.get("profile")),
        res.subject,
        rois.index(res.roi) if res.roi in rois else len(rois),
        res.roi,
        model_order(res),
        res.model,
        res.info.get("seed") if res.info.get("seed") is not None else -1,
    )


def collect_results(out, folder: str = "results") -> list:
    """Every valid file under ``out/<folder>`` (``"results"``: one per seed, ``"ensembles"``),
    sorted by :func:`result_key`.

    Corrupt files are skipped with a warning, and so are files whose name is not the one their
    metadata gives (a copy such as ``X_seed0 (copy).npz``, or a file renamed to another seed): a
    copied file is never counted as another seed.
    """
    results = []
    for path in sorted((Path(out) / folder).glob("*.npz")):
        try:
            result, meta = _load(path, None)
        except CorruptResultError as err:
            warnings.warn(f"skipping corrupt results file: {err}", stacklevel=2)
            continue
        name = _name_from_meta(meta)
        if name != path.name:
            warnings.warn(
                f"skipping {path}: its name does not match its contents, which belong in {name} "
                "(a copied or renamed file is not another seed)",
                stacklevel=2,
            )
            continue
        results.append(result)
    return sorted(results, key=result_key)


def _name_from_meta(meta: dict) -> str | None:
    """The file name a results (or ensemble) file's metadata gives it (None if it gives none)."""
    try:
        if meta.get("seeds") is not None and meta.get("seed") is None:  # a seed ensemble
            where = [meta[k] for k in ("dataset", "profile", "subject", "roi", "model", "seeds")]
            return ensemble_path(".", *where, meta.get("data_seed")).name
        return ResultKey.from_meta(meta).path(".").name
    except (KeyError, TypeError, ValueError):
        return None


MODEL_KEY_FIELDS = ("dataset", "data_seed", "profile", "subject", "roi", "model")


def model_key(res: EncodingResult) -> tuple:
    """Which model on which data a result (a seed or a seed ensemble) belongs to: the values of
    :data:`MODEL_KEY_FIELDS`, ``(dataset, data_seed, profile, subject, roi, model)``."""
    info = res.info
    return (
        res.dataset,
        info.get("data_seed"),
        info.get("profile"),
        res.subject,
        res.roi,
        res.model,
    )


def group_by_model(results) -> dict:
    """``{model_key: [results sorted by seed]}`` (:func:`model_key`)."""
    groups = {}
    for res in sorted(results, key=result_key):
        groups.setdefault(model_key(res), []).append(res)
    return groups


def mean_val_r(results) -> np.ndarray | None:
    """The mean over ``results`` (the seeds of one model, one ROI) of each voxel's validation r
    (``info["val_r"]``, ``(V,)``, measured on data carved from the train split): float64 ``(V,)``,
    or None when a result has none stored."""
    if not results or any(r.info.get("val_r") is None for r in results):
        return None
    return np.mean([np.asarray(r.info["val_r"], np.float64) for r in results], axis=0)


def describe_results(results) -> dict:
    """``{"profile", "device", "seeds"}`` of a list of results (from their ``info``), for figure
    labels."""
    profiles = sorted({str(r.info.get("profile")) for r in results if r.info.get("profile")})
    devices = sorted({str(r.info.get("device")) for r in results if r.info.get("device")})
    seeds = sorted({int(r.info["seed"]) for r in results if r.info.get("seed") is not None})
    return {
        "profile": "/".join(profiles) or None,
        "device": ", ".join(devices) or None,
        "seeds": seeds or None,
    }
