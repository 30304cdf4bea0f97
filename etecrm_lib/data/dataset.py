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
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ..storage import check_name

DEFAULT_ROIS = ("V1", "V2", "V3", "V4", "LO")
MIN_TEST_IMAGES = 3
"""Fewer test images are refused: r over 2 images is always +-1, over 1 image undefined."""
FEW_TEST_IMAGES = 20
"""Fewer test images give a warning: r over so few images is mostly noise (s.e. about 1/sqrt(N))."""


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
        if self.volume_index.size and (
            self.volume_index.min() < 1 or self.volume_index.max() > n_vox_volume
        ):
            raise ValueError(
                f"volume_index must be 1-based indices into a volume of shape {self.volume_shape} "
                f"(1..{n_vox_volume}); got values from {self.volume_index.min()} to "
                f"{self.volume_index.max()}"
            )
        for name, values in self.extra.items():
            if len(values) != self.volume_index.size:
                raise ValueError(
                    f"voxel metadata '{name}' has {len(values)} entries for "
                    f"{self.volume_index.size} voxels"
                )

    @property
    def coords(self) -> np.ndarray:
        """int64 (V, 3): 0-based voxel coordinates (column-major unravel of ``volume_index -
        1``)."""
        return np.stack(
            np.unravel_index(self.volume_index - 1, self.volume_shape, order="F"), axis=1
        )

    def __len__(self):
        return self.volume_index.size

    def subset(self, keep: np.ndarray) -> "VoxelInfo":
        """The metadata of the voxels selected by the boolean or integer array ``keep``."""
        return VoxelInfo(
            self.volume_index[keep],
            self.volume_shape,
            self.affine,
            {k: np.asarray(v)[keep] for k, v in self.extra.items()},
        )


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

    Build one with :func:`from_arrays`, with ``simulate()`` or a real loader. However it is built,
    the constructor checks it with :func:`check_dataset` (the one place a dataset is checked):
    shapes must agree, images must be square, finite and in [0, 1], test repeats need R >= 2 and
    must average to the test responses, voxels with any NaN/inf response or constant over the
    training images are dropped (with a warning that counts them), and an ROI left with no voxel is
    an error naming the ROI.
    """

    name: str
    subject: int
    train: Split
    test: Split
    voxels: dict
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        check_dataset(self)

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
            raise KeyError(
                f"ROI '{roi}' is not in dataset '{self.name}'; available ROIs: {self.rois}"
            )

    def describe(self) -> str:
        """A few lines a student can read: sizes, ROIs, voxel counts, repeats."""
        tr, te = self.train, self.test
        lines = [
            f"EncodingDataset '{self.name}', subject {self.subject}",
            f"  train: {tr.n_images} images of {tr.stimuli.shape[1]}x{tr.stimuli.shape[2]} px",
            f"  test:  {te.n_images} images"
            + (
                f", {next(iter(te.repeats.values())).shape[0]} repeats each"
                if te.repeats
                else ", no single-trial repeats"
            ),
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
            self.name,
            self.subject,
            Split(
                self.train.stimuli,
                pick(self.train.responses),
                pick(self.train.repeats),
                pick(self.train.oracle),
            ),
            Split(
                self.test.stimuli,
                pick(self.test.responses),
                pick(self.test.repeats),
                pick(self.test.oracle),
            ),
            pick(self.voxels),
            dict(self.info),
        )


# ---------------------------------------------------------------------- validation: the one place
def check_dataset(ds: EncodingDataset) -> EncodingDataset:
    """Check a dataset where it enters the library, and put it in the form the library trusts.

    Every dataset passes here exactly once: :func:`from_arrays`, ``simulate``, the real loaders and
    :func:`.npz.load_npz` all build an :class:`EncodingDataset`, whose constructor calls this. As
    scikit-learn's ``check_array`` does, it converts what it can (arrays to ``float32``, stimuli
    clipped to [0, 1]) and refuses what the pipeline cannot use with an error that says what is
    wrong, what was given and what to do:

    - stimuli ``(N, H, W)``, square (H == W), finite, in [0, 1]; train and test images of one size;
      at least :data:`MIN_TEST_IMAGES` test images (a warning below :data:`FEW_TEST_IMAGES`);
    - dataset and ROI names: names that can be part of a file name (``storage.check_name``: no
      ``/``, ``\\``, ``..``, no leading ``.``); the same ROIs in the train and the test split;
      ``repeats`` and ``oracle`` only for those ROIs (a near miss such as ``'v1'`` for ``'V1'`` is
      named);
    - per ROI: train responses ``(N_train, V)``, test responses ``(N_test, V)``, test repeats
      ``(R, N_test, V)`` with R >= 2, oracle ``(N_test, V)``, and V voxels in ``voxels[roi]``;
    - the test responses are the mean of the test repeats (the noise ceiling assumes they are).

    Voxels with any NaN/inf response, and voxels constant over the training images, are dropped,
    with a warning that counts them; an ROI left with no voxel is an error. Returns ``ds``, changed
    in place.
    """
    ds.train.stimuli = _check_stimuli(ds.train.stimuli, "train")
    ds.test.stimuli = _check_stimuli(ds.test.stimuli, "test")
    _check_test_size(ds.test.n_images)
    if ds.train.stimuli.shape[1:] != ds.test.stimuli.shape[1:]:
        raise ValueError(
            f"train images are {ds.train.stimuli.shape[1:]} but test images are "
            f"{ds.test.stimuli.shape[1:]}; "
            "resize both splits to one size"
        )
    for what, mapping in [
        ("train responses", ds.train.responses),
        ("test responses", ds.test.responses),
        ("test repeats", ds.test.repeats),
        ("test oracle", ds.test.oracle),
        ("voxels", ds.voxels),
    ]:
        _check_mapping(mapping, what)
    if not ds.train.responses:
        raise ValueError(
            "the dataset has no ROI: pass at least one ROI's responses, e.g. "
            "train_responses={'V1': array}"
        )
    rois = list(ds.train.responses)
    for roi in rois:  # names become parts of file names (results) and array names (dataset files)
        check_name(roi, "ROI name")
    check_name(ds.name, "the dataset name")
    for what, mapping in [
        ("test repeats", ds.test.repeats),
        ("test oracle", ds.test.oracle),
        ("test responses", ds.test.responses),
    ]:
        for key in mapping:
            if key not in ds.train.responses:
                near = _nearest(key, rois)
                raise ValueError(
                    f"{what} are given for ROI {key!r}, which has no train responses (the "
                    f"ROIs are {rois})"
                    + (f"; did you mean {near!r}?" if near is not None else "")
                    + " Key every dict by the same ROI names as train_responses."
                )
    for roi in rois:
        if roi not in ds.test.responses:
            raise ValueError(
                f"ROI {roi!r} has train responses but no test responses; pass "
                f"test_responses[{roi!r}] "
                f"(N_test, V) or test_repeats[{roi!r}] (R, N_test, V)"
            )
        if roi not in ds.voxels:
            raise ValueError(f"ROI {roi!r} has responses but no voxel metadata (voxels[{roi!r}])")
        _check_roi(ds, roi)
    return ds


def _check_test_size(n_test: int) -> None:
    if n_test < MIN_TEST_IMAGES:
        raise ValueError(
            f"the test split has {n_test} image(s), but scoring needs at least {MIN_TEST_IMAGES} "
            "(Pearson r over 2 images is always +1 or -1, over 1 image it is undefined); hold out "
            f"more images for testing ({FEW_TEST_IMAGES} or more for numbers worth reporting)"
        )
    if n_test < FEW_TEST_IMAGES:
        warnings.warn(
            f"the test split has only {n_test} images: r over so few images is mostly noise (its "
            f"standard error is about 1/sqrt({n_test}) = {n_test**-0.5:.2f}); hold out at least "
            f"{FEW_TEST_IMAGES} test images for numbers worth reporting",
            stacklevel=5,
        )


def _check_mapping(mapping, what: str) -> None:
    if not isinstance(mapping, Mapping):
        shape = getattr(mapping, "shape", None)
        given = f"{type(mapping).__name__}" + (f" of shape {shape}" if shape is not None else "")
        raise TypeError(
            f"{what} must be a dict ROI name -> array, got a {given}; wrap it, e.g. {{'V1': array}}"
        )


def _nearest(name, choices) -> str | None:
    """The choice closest to ``name`` (case ignored), or None if none is close: for 'did you
    mean'."""
    import difflib

    lower = {str(c).lower(): c for c in choices}
    key = str(name).lower()
    if key in lower:
        return lower[key]
    close = difflib.get_close_matches(key, list(lower), n=1, cutoff=0.5)
    return lower[close[0]] if close else None


def _as_float_array(value, what: str) -> np.ndarray:
    try:
        return np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"{what} must be an array of numbers, got a {type(value).__name__} ({err})"
        ) from None


def _check_stimuli(stimuli, split_name: str) -> np.ndarray:
    stimuli = _as_float_array(stimuli, f"{split_name} stimuli")
    if stimuli.ndim != 3:
        raise ValueError(
            f"{split_name} stimuli must have shape (N, H, W) (grayscale images), got shape "
            f"{stimuli.shape}; "
            "convert colour images to grayscale first (e.g. mean over the colour axis)"
        )
    if stimuli.shape[0] == 0:
        raise ValueError(
            f"{split_name} stimuli hold no image (shape {stimuli.shape}); pass at least one image"
        )
    if stimuli.shape[1] != stimuli.shape[2]:
        height, width = stimuli.shape[1:]
        side = min(height, width)
        raise ValueError(
            f"{split_name} images must be square, got {height} x {width} pixels (shape "
            f"{stimuli.shape}); the models "
            f"take square images. Crop them to the central {side} x {side} square, e.g. "
            f"images[:, {(height - side) // 2}:{(height - side) // 2 + side}, "
            f"{(width - side) // 2}:{(width - side) // 2 + side}], "
            "or pad them with mid-gray (0.5)"
        )
    if not np.all(np.isfinite(stimuli)):
        raise ValueError(
            f"{split_name} stimuli contain NaN or inf values; fix or drop those images"
        )
    lo, hi = float(stimuli.min()), float(stimuli.max())
    if lo < -1e-4 or hi > 1 + 1e-4:
        raise ValueError(
            f"{split_name} stimuli must be scaled to [0, 1], got values in [{lo:.3g}, {hi:.3g}]; "
            "divide 8-bit images by 255, or rescale with (x - x.min()) / (x.max() - x.min())"
        )
    return np.clip(stimuli, 0.0, 1.0)


def _check_roi(ds: EncodingDataset, roi: str) -> None:
    """Shapes, repeats, NaN voxels and the repeats' mean of one ROI (see :func:`check_dataset`)."""
    arrays = {"train responses": ds.train.responses[roi]}
    if roi in ds.test.repeats:  # before the test responses: those are often the repeats' mean
        arrays["test repeats"] = ds.test.repeats[roi]
    arrays["test responses"] = ds.test.responses[roi]
    if roi in ds.test.oracle:
        arrays["test oracle"] = ds.test.oracle[roi]
    arrays = {k: _as_float_array(v, f"ROI {roi!r}: {k}") for k, v in arrays.items()}
    n_vox = arrays["train responses"].shape[-1] if arrays["train responses"].ndim == 2 else -1
    n_test = ds.test.n_images
    for key, arr in arrays.items():
        if key == "test repeats":
            ok, want = arr.ndim == 3 and arr.shape[1:] == (n_test, n_vox), ("R", n_test, n_vox)
        else:
            want = (ds.train.n_images if key == "train responses" else n_test, n_vox)
            ok = arr.shape == want
        if not ok or n_vox < 0:
            raise ValueError(
                f"ROI {roi!r}: {key} have shape {arr.shape}, expected {want} (images x voxels"
                + (", R repeats first)" if key == "test repeats" else ")")
            )
    if "test repeats" in arrays and arrays["test repeats"].shape[0] < 2:
        raise ValueError(
            f"ROI {roi!r}: test repeats have shape {arrays['test repeats'].shape}, i.e. R = "
            f"{arrays['test repeats'].shape[0]} single trial per test image, but the noise "
            "ceiling needs R >= 2. "
            "Pass these responses as test_responses (shape (N_test, V), e.g. repeats[0]) "
            "and leave test_repeats out: "
            "the results then have no noise ceiling"
        )
    if len(ds.voxels[roi]) != n_vox:
        raise ValueError(
            f"ROI {roi!r}: {len(ds.voxels[roi])} voxels in metadata but {n_vox} in the responses"
        )
    arrays = _drop_unusable_voxels(ds, roi, arrays, n_vox)
    if "test repeats" in arrays:
        _check_repeats_mean(roi, arrays["test repeats"], arrays["test responses"])
    ds.train.responses[roi] = arrays["train responses"]
    ds.test.responses[roi] = arrays["test responses"]
    if "test repeats" in arrays:
        ds.test.repeats[roi] = arrays["test repeats"]
    if "test oracle" in arrays:
        ds.test.oracle[roi] = arrays["test oracle"]


def constant_columns(x, eps: float = 1e-6) -> np.ndarray:
    """bool ``(V,)``: which columns of ``x`` ``(N, V)`` are constant over its N rows.

    Relative: a column is constant when its s.d. is at most ``eps`` times its largest absolute
    value (an all-zero column is constant), so responses in any units (1e-20 or 1e20) are judged
    alike.
    """
    x = np.asarray(x, dtype=np.float64)
    return x.std(axis=0) <= eps * np.abs(x).max(axis=0, initial=0.0)


def _drop_unusable_voxels(ds: EncodingDataset, roi: str, arrays: dict, n_vox: int) -> dict:
    """Drop (with a warning that counts them) the voxels no model can use: any NaN/inf response,
    or train responses constant over the training images (nothing to learn; their test r would be
    chance alone, yet enter the ROI's median). ``ds.info["dropped_voxels"]`` and
    ``ds.info["constant_voxels"]`` count them per ROI. Returns the arrays of the kept voxels."""
    finite = np.ones(n_vox, dtype=bool)
    for arr in arrays.values():
        finite &= np.isfinite(arr).reshape(-1, n_vox).all(axis=0)
    train = arrays["train responses"]
    constant = finite & constant_columns(np.where(np.isfinite(train), train, 0.0))
    keep = finite & ~constant
    if not keep.any():
        raise ValueError(
            f"ROI {roi!r} has no usable voxel: of its {n_vox} voxels, {int((~finite).sum())} have "
            f"NaN/inf responses and {int(constant.sum())} are constant over the "
            f"{train.shape[0]} training images (or it is empty)"
        )
    for count, why, key in [
        (int((~finite).sum()), "with NaN/inf responses", "dropped_voxels"),
        (
            int(constant.sum()),
            f"whose responses are constant over the {train.shape[0]} training images (no model "
            "can learn them; their test r would be chance alone)",
            "constant_voxels",
        ),
    ]:
        if count:
            warnings.warn(f"ROI '{roi}': dropped {count} of {n_vox} voxels {why}", stacklevel=6)
            ds.info.setdefault(key, {})[roi] = count
    if keep.all():
        return arrays
    ds.voxels[roi] = ds.voxels[roi].subset(keep)
    return {k: v[..., keep] for k, v in arrays.items()}


def _check_repeats_mean(
    roi: str, repeats: np.ndarray, responses: np.ndarray, rtol: float = 1e-4
) -> None:
    """The scored test responses must be the mean of the repeats (to ``rtol`` of the largest
    value)."""
    mean = repeats.astype(np.float64).mean(axis=0)
    diff = np.abs(mean - responses)
    scale = max(float(np.abs(mean).max()), float(np.abs(responses).max()))
    if diff.max() > rtol * scale:
        image, voxel = np.unravel_index(int(diff.argmax()), diff.shape)
        raise ValueError(
            f"ROI {roi!r}: the test responses are not the mean of the test repeats (they "
            "differ by up to "
            f"{diff.max():.3g}, at test image {image}, voxel {voxel}, for values up to "
            f"{scale:.3g}). The noise ceiling "
            "is computed for the mean of the repeats, so the scored responses must be that "
            "mean: pass only "
            "test_repeats (the mean is taken for you), or test_responses = "
            "test_repeats.mean(axis=0)"
        )


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
    train_stimuli, test_stimuli : (N, H, W) arrays in [0, 1], square images (H == W)
    train_responses : dict roi -> (N_train, V) array
    test_responses : dict roi -> (N_test, V) array, optional if ``test_repeats`` is given (then the
        mean over repeats is used); if both are given, it must be that mean
    test_repeats : dict roi -> (R, N_test, V) array of single-trial responses, R >= 2, optional
    test_oracle : dict roi -> (N_test, V) noise-free responses, optional (simulations)
    voxels : dict roi -> VoxelInfo, optional; without it voxels are laid out along a line of a
        (V, 1, 1) volume with an identity affine.

    Every dict is keyed by the ROI names of ``train_responses``. What is checked, and the errors,
    are listed in :func:`check_dataset`.
    """
    for what, mapping in [
        ("train_responses", train_responses),
        ("test_responses", test_responses),
        ("test_repeats", test_repeats),
        ("test_oracle", test_oracle),
        ("voxels", voxels),
    ]:
        if mapping is not None:
            _check_mapping(mapping, what)
    test_repeats = dict(test_repeats or {})
    if test_responses is None:
        if not test_repeats:
            raise ValueError(
                "give test_responses (dict ROI -> (N_test, V)), or test_repeats "
                "(dict ROI -> (R, N_test, V)) to average"
            )
        test_responses = {
            roi: _as_float_array(r, f"test_repeats[{roi!r}]").astype(np.float64).mean(axis=0)
            for roi, r in test_repeats.items()
        }
    if voxels is None:
        voxels = {}
    voxels = dict(voxels)
    for roi, resp in train_responses.items():
        if roi not in voxels:
            n = np.shape(resp)[-1] if np.ndim(resp) else 0
            if n == 0:
                raise ValueError(f"ROI '{roi}' has no voxels (its response array has 0 columns)")
            voxels[roi] = VoxelInfo(np.arange(1, n + 1), (n, 1, 1), np.eye(4))
    return EncodingDataset(
        name,
        int(subject),
        Split(train_stimuli, dict(train_responses)),
        Split(test_stimuli, dict(test_responses), test_repeats, dict(test_oracle or {})),
        voxels,
        dict(info or {}),
    )
