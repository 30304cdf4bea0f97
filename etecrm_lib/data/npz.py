"""A dataset in one file: :func:`save_npz` writes an :class:`~.dataset.EncodingDataset` to a
compressed ``.npz`` (atomically; zlib level 1), :func:`load_npz` reads it back and checks it like
any other dataset."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from ..storage import CorruptFileError, atomic_write, read_npz
from .dataset import EncodingDataset, Split, VoxelInfo


def save_npz(ds: EncodingDataset, path) -> Path:
    """Write the dataset to one compressed ``.npz`` file (atomically). Returns the path."""
    arrays = {
        "train_stimuli": ds.train.stimuli,
        "test_stimuli": ds.test.stimuli,
        "meta_name": np.array(ds.name),
        "meta_subject": np.array(ds.subject),
        "meta_rois": np.array(ds.rois),
    }
    for roi in ds.rois:
        arrays[f"train_responses/{roi}"] = ds.train.responses[roi]
        arrays[f"test_responses/{roi}"] = ds.test.responses[roi]
        if roi in ds.test.repeats:
            arrays[f"test_repeats/{roi}"] = ds.test.repeats[roi]
        if roi in ds.test.oracle:
            arrays[f"test_oracle/{roi}"] = ds.test.oracle[roi]
        vox = ds.voxels[roi]
        arrays[f"voxels/{roi}/volume_index"] = vox.volume_index
        arrays[f"voxels/{roi}/volume_shape"] = np.array(vox.volume_shape)
        arrays[f"voxels/{roi}/affine"] = vox.affine
        for key, value in vox.extra.items():
            arrays[f"voxels/{roi}/extra/{key}"] = np.asarray(value)
    arrays["meta_info"] = np.array(json.dumps({k: v for k, v in ds.info.items() if _jsonable(v)}))
    path = Path(path)
    with atomic_write(path) as tmp:
        # np.savez_compressed's format (one .npy per array in a zip) at zlib level 1: a default
        # simulated subject is written in about 2 s of CPU instead of 9 s, 8 % larger (72 MB)
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            for name, value in arrays.items():
                with archive.open(f"{name}.npy", "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, np.asanyarray(value), allow_pickle=False)
    return path


def _jsonable(value) -> bool:
    try:
        json.dumps(value)
        return True
    except TypeError:
        return False


REMAKE = "create it again with etecrm_lib.data.save_npz(ds, path)"


def load_npz(path) -> EncodingDataset:
    """Read a dataset written by :func:`save_npz`, checked like any other (:func:`check_dataset`).

    Raises FileNotFoundError if there is no file, and :class:`~etecrm_lib.storage.CorruptFileError`
    (a ValueError) naming the file if it is not a dataset written by :func:`save_npz`: unreadable
    or damaged (whatever the damage), a single ``.npy`` array, pickled objects, a "zip bomb", or an
    edited file with arrays missing, a broken ``meta_info`` or arrays that fail the dataset check.
    """
    path = Path(path)
    if path.exists() and path.is_file() and not zipfile.is_zipfile(path):
        try:
            with open(path, "rb") as f:
                np.lib.format.read_magic(f)
                shape = f"shape {np.lib.format.read_array_header_1_0(f)[0]}"
        except Exception:  # not a .npy either (or a damaged one): read_npz says so
            shape = None
        if shape is not None:
            raise CorruptFileError(
                f"{path} holds one array saved with np.save ({shape}), not a dataset. Build a "
                "dataset with etecrm_lib.data.from_arrays(...) and write it with "
                "etecrm_lib.data.save_npz(ds, 'name.npz')"
            )
    data = read_npz(path, "dataset file", fix=REMAKE)
    try:
        return _dataset(path, data)
    except CorruptFileError:
        raise
    except Exception as err:  # any array an edit or damage made unusable: one error type
        message = str(err) if str(path) in str(err) else f"{path}: {err}"
        raise CorruptFileError(message) from None


def _dataset(path: Path, data: dict) -> EncodingDataset:
    """The dataset held by the arrays of a dataset file (errors name ``path``)."""
    edited = (
        "; create it again with etecrm_lib.data.save_npz(ds, path) rather than editing it by hand"
    )
    missing = [
        k
        for k in ("train_stimuli", "test_stimuli", "meta_rois", "meta_name", "meta_subject")
        if k not in data
    ]
    if missing:
        raise ValueError(
            f"{path} is not an etecrm dataset file: arrays {missing} are missing (it holds "
            f"{sorted(data)[:8]}{' ...' if len(data) > 8 else ''}); create dataset files with "
            "etecrm_lib.data.save_npz"
        )
    rois = [str(r) for r in np.atleast_1d(data["meta_rois"])]
    per_roi = (
        "train_responses/{}",
        "test_responses/{}",
        "voxels/{}/volume_index",
        "voxels/{}/volume_shape",
        "voxels/{}/affine",
    )
    missing = [key.format(roi) for roi in rois for key in per_roi if key.format(roi) not in data]
    if missing:
        raise ValueError(
            f"{path} is damaged or was edited: arrays {missing} of the ROIs listed in meta_rois "
            f"{rois} are missing" + edited
        )
    try:
        info = json.loads(str(data["meta_info"])) if "meta_info" in data else {}
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{path} is damaged or was edited: meta_info is not valid JSON ({err})" + edited
        ) from None
    if not isinstance(info, dict):
        raise ValueError(
            f"{path} is damaged or was edited: meta_info is a JSON {type(info).__name__}, not an "
            "object" + edited
        )
    try:
        subject = int(data["meta_subject"])
    except (TypeError, ValueError):
        raise ValueError(
            f"{path} is damaged or was edited: meta_subject is {data['meta_subject']!r}, not an "
            "integer" + edited
        ) from None
    voxels, tr, te = {}, {}, {}
    extra_arrays = {"test_repeats": {}, "test_oracle": {}}
    for (
        key,
        value,
    ) in data.items():  # every ROI's, so that a stray ROI name is reported, not ignored
        kind, _, roi = key.partition("/")
        if kind in extra_arrays:
            extra_arrays[kind][roi] = value
    for roi in rois:
        tr[roi] = data[f"train_responses/{roi}"]
        te[roi] = data[f"test_responses/{roi}"]
        prefix = f"voxels/{roi}/extra/"
        extra = {k[len(prefix) :]: v for k, v in data.items() if k.startswith(prefix)}
        try:
            voxels[roi] = VoxelInfo(
                data[f"voxels/{roi}/volume_index"],
                tuple(data[f"voxels/{roi}/volume_shape"]),
                data[f"voxels/{roi}/affine"],
                extra,
            )
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: ROI {roi!r}: bad voxel metadata ({err})" + edited) from None
    return EncodingDataset(
        str(data["meta_name"]),
        subject,
        Split(data["train_stimuli"], tr),
        Split(data["test_stimuli"], te, extra_arrays["test_repeats"], extra_arrays["test_oracle"]),
        voxels,
        info,
    )
