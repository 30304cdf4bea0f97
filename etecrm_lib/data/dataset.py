"""The one dataset type every chapter and model uses.

An :class:`EncodingDataset` holds the stimulus images a subject saw and the fMRI responses of the
voxels of each region of interest (ROI), split into a *train* split (used for fitting, with any
validation folds carved out of it) and a held-out *test* split (used only to report accuracy).

Shapes and units
----------------
- ``ds.train.stimuli``: ``float32 (N_train, H, W)``, grayscale in [0, 1] (mid-gray = 0.5).
- ``ds.train.responses[roi]``: ``float32 (N_train, V_roi)`` (arbitrary units, usually z-scored).
- ``ds.test.stimuli``: ``float32 (N_test, H, W)``.
- ``ds.test.responses[roi]``: ``float32 (N_test, V_roi)``, the mean over repeats when there are any.
- ``ds.test.repeats[roi]``: ``float32 (R, N_test, V_roi)``, single-trial responses (absent if the
  source has none, as on vim-1).
- ``ds.test.oracle[roi]``: ``float32 (N_test, V_roi)``, the noise-free response (simulation only).
- ``ds.voxels[roi]``: :class:`VoxelInfo` with ``volume_index`` (1-based linear index, MATLAB order,
  into a volume of shape ``volume_shape``), ``coords`` ``(V, 3)`` voxel coordinates and the affine.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DEFAULT_ROIS = ("V1", "V2", "V3", "V4", "LO")


@dataclass
class VoxelInfo:
    """Where each voxel of one ROI sits in the brain volume.

    Attributes
    ----------
    volume_index : int64 (V,)
        1-based linear index into the functional volume, in MATLAB (column-major, Fortran) order,
        exactly as vim-1's ``voxIdx`` gives it.
    coords : int64 (V, 3)
        0-based (i, j, k) voxel coordinates derived from ``volume_index``.
    volume_shape : tuple of 3 ints
        Shape of the functional volume, e.g. (64, 64, 18) for vim-1.
    affine : float64 (4, 4)
        Voxel -> world (mm) transform, for drawing brain maps with nilearn.
    extra : dict of name -> (V,) arrays
        Optional per-voxel metadata (e.g. simulated receptive-field centre and size).
    """

    volume_index: np.ndarray
    volume_shape: tuple
    affine: np.ndarray
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.volume_index = np.asarray(self.volume_index, dtype=np.int64).reshape(-1)
        self.volume_shape = tuple(int(s) for s in self.volume_shape)
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got shape {self.affine.shape}")
        n_vox_volume = int(np.prod(self.volume_shape))
        if self.volume_index.size and (self.volume_index.min() < 1 or self.volume_index.max() > n_vox_volume):
            raise ValueError(
                f"volume_index must be 1-based indices into a volume of shape {self.volume_shape} "
                f"(1..{n_vox_volume}); got values from {self.volume_index.min()} to {self.volume_index.max()}"
            )
        for name, values in self.extra.items():
            if len(values) != self.volume_index.size:
                raise ValueError(f"voxel metadata '{name}' has {len(values)} entries for {self.volume_index.size} voxels")

    @property
    def coords(self) -> np.ndarray:
        """int64 (V, 3): 0-based voxel coordinates (column-major unravel of ``volume_index - 1``)."""
        return np.stack(np.unravel_index(self.volume_index - 1, self.volume_shape, order="F"), axis=1)

    def __len__(self):
        return self.volume_index.size

    def subset(self, keep: np.ndarray) -> "VoxelInfo":
        """The metadata of the voxels selected by the boolean or integer array ``keep``."""
        return VoxelInfo(self.volume_index[keep], self.volume_shape, self.affine,
                         {k: np.asarray(v)[keep] for k, v in self.extra.items()})


@dataclass
class Split:
    """One split (train or test) of a dataset: images and the responses they evoked."""

    stimuli: np.ndarray
    responses: dict
    repeats: dict = field(default_factory=dict)
    oracle: dict = field(default_factory=dict)

    @property
    def n_images(self) -> int:
        return int(self.stimuli.shape[0])


@dataclass
class EncodingDataset:
    """Stimuli and ROI-wise voxel responses with a train split and a held-out test split.

    Build one with :func:`from_arrays` (which validates), with ``simulate()`` or a real loader.
    Constructing it directly also validates: shapes must agree, stimuli must be finite, voxels with
    any NaN/inf response are dropped (with a warning that counts them), and an ROI left with no
    voxel is an error naming the ROI.
    """

    name: str
    subject: int
    train: Split
    test: Split
    voxels: dict
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        _validate(self)

    # ----------------------------------------------------------------- convenience
    @property
    def rois(self) -> list:
        """The ROI names, in order."""
        return list(self.train.responses)

    @property
    def image_size(self) -> int:
        return int(self.train.stimuli.shape[-1])

    def n_voxels(self, roi: str) -> int:
        self.check_roi(roi)
        return int(self.train.responses[roi].shape[1])

    def check_roi(self, roi: str) -> None:
        """Raise a KeyError that lists the available ROIs if ``roi`` is not one of them."""
        if roi not in self.train.responses:
            raise KeyError(f"ROI '{roi}' is not in dataset '{self.name}'; available ROIs: {self.rois}")

    def describe(self) -> str:
        """A few lines a student can read: sizes, ROIs, voxel counts, repeats."""
        tr, te = self.train, self.test
        lines = [
            f"EncodingDataset '{self.name}', subject {self.subject}",
            f"  train: {tr.n_images} images of {tr.stimuli.shape[1]}x{tr.stimuli.shape[2]} px",
            f"  test:  {te.n_images} images"
            + (f", {next(iter(te.repeats.values())).shape[0]} repeats each" if te.repeats else ", no single-trial repeats"),
            "  ROIs (voxels): " + ", ".join(f"{r} ({self.n_voxels(r)})" for r in self.rois),
        ]
        if te.oracle:
            lines.append("  noise-free test responses (oracle) are known: this is simulated data")
        for key, value in self.info.items():
            if isinstance(value, (str, int, float)):
                lines.append(f"  {key}: {value}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.describe()

    def select_rois(self, rois) -> "EncodingDataset":
        """A dataset with only the given ROIs (shares the arrays; nothing is copied)."""
        for roi in rois:
            self.check_roi(roi)

        def pick(d):
            return {r: d[r] for r in rois if r in d}

        return EncodingDataset(
            self.name, self.subject,
            Split(self.train.stimuli, pick(self.train.responses), pick(self.train.repeats), pick(self.train.oracle)),
            Split(self.test.stimuli, pick(self.test.responses), pick(self.test.repeats), pick(self.test.oracle)),
            pick(self.voxels), dict(self.info),
        )


# ---------------------------------------------------------------------- validation
def _check_stimuli(stimuli, split_name: str) -> np.ndarray:
    stimuli = np.asarray(stimuli)
    if stimuli.ndim != 3:
        raise ValueError(
            f"{split_name} stimuli must have shape (N, H, W) (grayscale images), got shape {stimuli.shape}; "
            "convert colour images to grayscale first (e.g. mean over the colour axis)"
        )
    stimuli = stimuli.astype(np.float32, copy=False)
    if not np.all(np.isfinite(stimuli)):
        raise ValueError(f"{split_name} stimuli contain NaN or inf values; fix or drop those images")
    lo, hi = float(stimuli.min()), float(stimuli.max())
    if lo < -1e-4 or hi > 1 + 1e-4:
        raise ValueError(
            f"{split_name} stimuli must be scaled to [0, 1], got values in [{lo:.3g}, {hi:.3g}]; "
            "divide 8-bit images by 255, or rescale with (x - x.min()) / (x.max() - x.min())"
        )
    return np.clip(stimuli, 0.0, 1.0)


def _validate(ds: EncodingDataset) -> None:
    ds.train.stimuli = _check_stimuli(ds.train.stimuli, "train")
    ds.test.stimuli = _check_stimuli(ds.test.stimuli, "test")
    if ds.train.stimuli.shape[1:] != ds.test.stimuli.shape[1:]:
        raise ValueError(f"train images are {ds.train.stimuli.shape[1:]} but test images are {ds.test.stimuli.shape[1:]}")
    if set(ds.train.responses) != set(ds.test.responses):
        raise ValueError(f"train ROIs {sorted(ds.train.responses)} differ from test ROIs {sorted(ds.test.responses)}")
    if not ds.train.responses:
        raise ValueError("the dataset has no ROI: pass at least one ROI's responses")
    for roi in list(ds.train.responses):
        if roi not in ds.voxels:
            raise ValueError(f"ROI '{roi}' has responses but no voxel metadata (voxels['{roi}'])")
        arrays = {"train responses": ds.train.responses[roi], "test responses": ds.test.responses[roi]}
        if roi in ds.test.repeats:
            arrays["test repeats"] = ds.test.repeats[roi]
        if roi in ds.test.oracle:
            arrays["test oracle"] = ds.test.oracle[roi]
        arrays = {k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()}
        n_vox = arrays["train responses"].shape[-1] if arrays["train responses"].ndim == 2 else -1
        expected = {
            "train responses": (ds.train.n_images, n_vox),
            "test responses": (ds.test.n_images, n_vox),
            "test oracle": (ds.test.n_images, n_vox),
        }
        for key, arr in arrays.items():
            want = expected.get(key)
            if key == "test repeats":
                ok = arr.ndim == 3 and arr.shape[1:] == (ds.test.n_images, n_vox)
                want = ("R", ds.test.n_images, n_vox)
            else:
                ok = arr.shape == want
            if not ok or n_vox < 0:
                raise ValueError(f"ROI '{roi}': {key} have shape {arr.shape}, expected {want}")
        if len(ds.voxels[roi]) != n_vox:
            raise ValueError(f"ROI '{roi}': {len(ds.voxels[roi])} voxels in metadata but {n_vox} in the responses")
        finite = np.ones(n_vox, dtype=bool)
        for key, arr in arrays.items():
            finite &= np.isfinite(arr).reshape(-1, n_vox).all(axis=0)
        n_bad = int((~finite).sum())
        if n_bad == n_vox:
            raise ValueError(f"ROI '{roi}' has no usable voxel: all {n_vox} voxels have NaN/inf responses (or it is empty)")
        if n_bad:
            warnings.warn(f"ROI '{roi}': dropped {n_bad} of {n_vox} voxels with NaN/inf responses", stacklevel=3)
            ds.info.setdefault("dropped_voxels", {})[roi] = n_bad
            arrays = {k: v[..., finite] for k, v in arrays.items()}
            ds.voxels[roi] = ds.voxels[roi].subset(finite)
        ds.train.responses[roi] = arrays["train responses"]
        ds.test.responses[roi] = arrays["test responses"]
        if "test repeats" in arrays:
            ds.test.repeats[roi] = arrays["test repeats"]
        if "test oracle" in arrays:
            ds.test.oracle[roi] = arrays["test oracle"]


# ---------------------------------------------------------------------- construction and files
def from_arrays(
    train_stimuli,
    train_responses: dict,
    test_stimuli,
    test_responses: dict | None = None,
    *,
    test_repeats: dict | None = None,
    test_oracle: dict | None = None,
    voxels: dict | None = None,
    name: str = "custom",
    subject: int = 1,
    info: dict | None = None,
) -> EncodingDataset:
    """Build a validated :class:`EncodingDataset` from plain arrays (bring your own data).

    Parameters
    ----------
    train_stimuli, test_stimuli : (N, H, W) arrays in [0, 1]
    train_responses : dict roi -> (N_train, V) array
    test_responses : dict roi -> (N_test, V) array, optional if ``test_repeats`` is given (then the
        mean over repeats is used)
    test_repeats : dict roi -> (R, N_test, V) array of single-trial responses, optional
    test_oracle : dict roi -> (N_test, V) noise-free responses, optional (simulations)
    voxels : dict roi -> VoxelInfo, optional; without it voxels are laid out along a line of a
        (V, 1, 1) volume with an identity affine.
    """
    test_repeats = dict(test_repeats or {})
    if test_responses is None:
        if not test_repeats:
            raise ValueError("give test_responses, or test_repeats to average")
        test_responses = {roi: np.asarray(r).mean(axis=0) for roi, r in test_repeats.items()}
    if voxels is None:
        voxels = {}
    voxels = dict(voxels)
    for roi, resp in train_responses.items():
        if roi not in voxels:
            n = np.asarray(resp).shape[-1]
            if n == 0:
                raise ValueError(f"ROI '{roi}' has no voxels (its response array has 0 columns)")
            voxels[roi] = VoxelInfo(np.arange(1, n + 1), (n, 1, 1), np.eye(4))
    return EncodingDataset(
        name, int(subject),
        Split(train_stimuli, dict(train_responses)),
        Split(test_stimuli, dict(test_responses), test_repeats, dict(test_oracle or {})),
        voxels, dict(info or {}),
    )


def save_npz(ds: EncodingDataset, path) -> Path:
    """Write the dataset to one compressed ``.npz`` file (atomically). Returns the path."""
    from ..storage import atomic_write

    arrays = {
        "train_stimuli": ds.train.stimuli, "test_stimuli": ds.test.stimuli,
        "meta_name": np.array(ds.name), "meta_subject": np.array(ds.subject),
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
    import json

    arrays["meta_info"] = np.array(json.dumps({k: v for k, v in ds.info.items() if _jsonable(v)}))
    path = Path(path)
    with atomic_write(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    return path


def _jsonable(value) -> bool:
    import json

    try:
        json.dumps(value)
        return True
    except TypeError:
        return False


def load_npz(path) -> EncodingDataset:
    """Read a dataset written by :func:`save_npz`. Raises ValueError naming the file if it is not one."""
    import json
    import zipfile

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no dataset file at {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise ValueError(f"{path} is not a readable .npz dataset file ({err}); delete it and create it again") from err
    missing = [k for k in ("train_stimuli", "test_stimuli", "meta_rois") if k not in data]
    if missing:
        raise ValueError(f"{path} is not an etecrm dataset file: missing arrays {missing}")
    rois = [str(r) for r in data["meta_rois"]]
    voxels, tr, te, rep, orc = {}, {}, {}, {}, {}
    for roi in rois:
        tr[roi] = data[f"train_responses/{roi}"]
        te[roi] = data[f"test_responses/{roi}"]
        if f"test_repeats/{roi}" in data:
            rep[roi] = data[f"test_repeats/{roi}"]
        if f"test_oracle/{roi}" in data:
            orc[roi] = data[f"test_oracle/{roi}"]
        prefix = f"voxels/{roi}/extra/"
        extra = {k[len(prefix):]: v for k, v in data.items() if k.startswith(prefix)}
        voxels[roi] = VoxelInfo(data[f"voxels/{roi}/volume_index"], tuple(data[f"voxels/{roi}/volume_shape"]),
                                data[f"voxels/{roi}/affine"], extra)
    info = json.loads(str(data["meta_info"])) if "meta_info" in data else {}
    return EncodingDataset(str(data["meta_name"]), int(data["meta_subject"]),
                           Split(data["train_stimuli"], tr), Split(data["test_stimuli"], te, rep, orc), voxels, info)
