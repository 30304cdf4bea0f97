"""Property-based tests (hypothesis): dataset files round-trip exactly; Pearson r behaves as r must.

Example counts are kept small so that the suite stays quick on a 2-core machine; a failure prints
the smallest example hypothesis found, which makes a plain regression test.
"""

import os
import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from etecrm_lib.data import VoxelInfo, from_arrays, load_npz, save_npz
from etecrm_lib.evaluation import pearson_r
from etecrm_lib.storage import UnsafeNameError, check_name


def _is_safe(name) -> bool:
    try:
        return check_name(name) == name
    except UnsafeNameError:
        return False


FEW = settings(max_examples=int(os.environ.get("HYP_N", 30)), deadline=None)

roi_names = st.text(min_size=1, max_size=5).filter(lambda t: _is_safe(t))
responses = st.floats(-1e6, 1e6, width=32) | st.just(
    np.nan
)  # NaN sometimes: that voxel must be dropped
json_values = (
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False)
)


@st.composite
def dataset_arrays(draw):
    """Keyword arguments of from_arrays: 1-3 ROIs, with or without repeats, oracle, voxel
    metadata."""
    n_train, n_test, size = (
        draw(st.integers(1, 5)),
        draw(st.integers(3, 5)),  # at least 3 test images (data.dataset.MIN_TEST_IMAGES)
        draw(st.integers(1, 4)),
    )
    pixels = st.floats(0, 1, width=32)
    kwargs = {
        "train_stimuli": draw(arrays(np.float32, (n_train, size, size), elements=pixels)),
        "test_stimuli": draw(arrays(np.float32, (n_test, size, size), elements=pixels)),
        "train_responses": {},
        "test_responses": {},
        "test_repeats": {},
        "test_oracle": {},
        "voxels": {},
        "name": draw(st.text(max_size=10) | st.just("sim\x00")),
        "subject": draw(st.integers(1, 99)),
        "info": draw(st.dictionaries(st.text(max_size=6), json_values, max_size=3)),
    }
    every_roi_has_repeats = draw(st.booleans())
    for roi in draw(st.lists(roi_names, min_size=1, max_size=3, unique=True)):
        n_vox = draw(st.integers(1, 4))
        kwargs["train_responses"][roi] = draw(
            arrays(np.float32, (n_train, n_vox), elements=responses)
        )
        if every_roi_has_repeats or draw(st.booleans()):
            repeats = draw(
                arrays(np.float32, (draw(st.integers(2, 3)), n_test, n_vox), elements=responses)
            )
            kwargs["test_repeats"][roi] = repeats
            kwargs["test_responses"][roi] = repeats.astype(np.float64).mean(axis=0)
        else:
            kwargs["test_responses"][roi] = draw(
                arrays(np.float32, (n_test, n_vox), elements=responses)
            )
        if draw(st.booleans()):
            kwargs["test_oracle"][roi] = draw(
                arrays(np.float32, (n_test, n_vox), elements=responses)
            )
        if draw(st.booleans()):
            extra = {"prf_x": draw(arrays(np.float64, n_vox, elements=st.floats(-10, 10)))}
            kwargs["voxels"][roi] = VoxelInfo(
                np.arange(1, n_vox + 1) * 2, (2 * n_vox, 1, 1), np.diag([2, 2, 2.5, 1]), extra
            )
    if every_roi_has_repeats and draw(st.booleans()):
        kwargs["test_responses"] = None  # from_arrays averages the repeats itself
    return kwargs


def _kept_voxels(kwargs, roi) -> np.ndarray:
    parts = [kwargs["train_responses"][roi], (kwargs["test_responses"] or {}).get(roi)]
    parts += [kwargs["test_repeats"].get(roi), kwargs["test_oracle"].get(roi)]
    n_vox = kwargs["train_responses"][roi].shape[1]
    finite = np.all(
        [np.isfinite(p).reshape(-1, n_vox).all(0) for p in parts if p is not None], axis=0
    )
    train = np.where(finite, kwargs["train_responses"][roi], 0).astype(np.float64)
    spread, size = train.std(0), np.abs(train).max(0)  # constant over training: dropped too
    return finite & (spread > 1e-6 * size)


@FEW
@given(dataset_arrays())
def test_from_arrays_keeps_exactly_the_finite_voxels_and_npz_round_trips(tmp_path_factory, kwargs):
    try:  # the name rule (storage.check_name; its own property test: test_reliability.py)
        check_name(kwargs["name"])
    except UnsafeNameError:
        with pytest.raises(UnsafeNameError, match="the dataset name"):
            from_arrays(**kwargs)
        return
    kept = {roi: _kept_voxels(kwargs, roi) for roi in kwargs["train_responses"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "dropped n of V voxels"
        if not all(k.any() for k in kept.values()):
            with pytest.raises(ValueError, match="has no usable voxel"):
                from_arrays(**kwargs)
            return
        ds = from_arrays(**kwargs)
    assert ds.rois == list(kwargs["train_responses"])
    for roi, keep in kept.items():
        np.testing.assert_array_equal(
            ds.train.responses[roi], kwargs["train_responses"][roi][:, keep]
        )
        if roi in kwargs["test_repeats"]:
            np.testing.assert_array_equal(
                ds.test.repeats[roi], kwargs["test_repeats"][roi][..., keep]
            )
        assert ds.info.get("dropped_voxels", {}).get(roi, 0) == int((~keep).sum())

    path = save_npz(ds, tmp_path_factory.mktemp("npz") / "ds.npz")
    back = load_npz(path)
    assert (back.name, back.subject, back.rois, back.info) == (
        ds.name,
        ds.subject,
        ds.rois,
        ds.info,
    )
    for a, b in [(ds.train, back.train), (ds.test, back.test)]:
        np.testing.assert_array_equal(a.stimuli, b.stimuli)
        for field in ("responses", "repeats", "oracle"):
            assert list(getattr(a, field)) == list(getattr(b, field))
            for roi in getattr(a, field):
                np.testing.assert_array_equal(getattr(a, field)[roi], getattr(b, field)[roi])
    for roi in ds.rois:
        va, vb = ds.voxels[roi], back.voxels[roi]
        np.testing.assert_array_equal(va.volume_index, vb.volume_index)
        np.testing.assert_array_equal(va.affine, vb.affine)
        assert va.volume_shape == vb.volume_shape and list(va.extra) == list(vb.extra)
        for key in va.extra:
            np.testing.assert_array_equal(va.extra[key], vb.extra[key])


# --------------------------------------------------------------------------- Pearson r
def _columns(n, v, elements):
    return arrays(np.float64, (n, v), elements=elements)


@st.composite
def two_matrices(draw, elements, min_n=1):
    n, v = draw(st.integers(min_n, 12)), draw(st.integers(1, 4))
    return draw(_columns(n, v, elements)), draw(_columns(n, v, elements))


nonzero_scale = st.floats(1e-3, 1e3).flatmap(lambda a: st.sampled_from([a, -a]))


@FEW
@given(
    two_matrices(st.floats(-100, 100), min_n=3),
    nonzero_scale,
    st.floats(-1e3, 1e3),
    nonzero_scale,
    st.floats(-1e3, 1e3),
)
def test_pearson_r_ignores_scale_and_offset(xy, a, b, c, d):
    x, y = xy
    assume(x.std(0).min() > 1e-2 and y.std(0).min() > 1e-2)
    np.testing.assert_allclose(
        pearson_r(a * x + b, c * y + d), np.sign(a * c) * pearson_r(x, y), atol=1e-5
    )


@FEW
@given(two_matrices(st.floats(allow_nan=False, allow_infinity=False)))
def test_pearson_r_of_any_finite_input_is_finite_and_within_one(xy):
    x, y = xy
    for dtype in (np.float64, np.float32):
        with np.errstate(
            over="ignore"
        ):  # float64 -> float32 may overflow to inf: that must raise, see below
            xs, ys = x.astype(dtype), y.astype(dtype)
        if not (np.isfinite(xs).all() and np.isfinite(ys).all()):
            continue
        r = pearson_r(xs, ys)
        assert r.shape == (x.shape[1],) and np.all(np.isfinite(r)) and np.all(np.abs(r) <= 1)


@FEW
@given(
    two_matrices(st.floats(-1e3, 1e3)),
    st.sampled_from([np.nan, np.inf, -np.inf]),
    st.booleans(),
    st.data(),
)
def test_pearson_r_refuses_any_non_finite_value(xy, bad, in_predictions, data):
    x, y = xy
    target = x if in_predictions else y
    i, j = data.draw(st.integers(0, x.shape[0] - 1)), data.draw(st.integers(0, x.shape[1] - 1))
    target[i, j] = bad
    with pytest.raises(
        ValueError,
        match=rf"{'predictions' if in_predictions else 'responses'} contain .* column {j}",
    ):
        pearson_r(x, y)
