"""EncodingDataset: validation, NaN-voxel dropping, npz round trip, clear errors."""

import numpy as np
import pytest

from etecrm_lib.data import EncodingDataset, VoxelInfo, from_arrays, load_npz, save_npz


def _arrays(n_train=12, n_test=5, size=8, n_vox=6, seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.uniform(size=(n_train, size, size)),
        {"V1": rng.normal(size=(n_train, n_vox))},
        rng.uniform(size=(n_test, size, size)),
    )


def test_from_arrays_builds_a_valid_dataset():
    tr_x, tr_y, te_x = _arrays()
    rep = {"V1": np.random.default_rng(1).normal(size=(3, 5, 6))}
    ds = from_arrays(tr_x, tr_y, te_x, test_repeats=rep, name="toy", subject=2)
    assert ds.rois == ["V1"] and ds.subject == 2 and ds.image_size == 8
    assert ds.train.stimuli.dtype == np.float32 and ds.train.responses["V1"].dtype == np.float32
    np.testing.assert_allclose(ds.test.responses["V1"], rep["V1"].mean(0), rtol=1e-6)
    text = ds.describe()
    assert "V1 (6)" in text and "3 repeats" in text and repr(ds) == text


def test_nan_voxels_are_dropped_and_counted():
    tr_x, tr_y, te_x = _arrays()
    tr_y["V1"][3, 2] = np.nan
    te_y = {"V1": np.zeros((5, 6))}
    te_y["V1"][0, 4] = np.inf
    with pytest.warns(UserWarning, match="dropped 2 of 6"):
        ds = from_arrays(tr_x, tr_y, te_x, te_y)
    assert ds.n_voxels("V1") == 4
    assert ds.info["dropped_voxels"] == {"V1": 2}
    np.testing.assert_array_equal(ds.voxels["V1"].volume_index, [1, 2, 4, 6])


def test_errors_say_what_is_wrong():
    tr_x, tr_y, te_x = _arrays()
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        from_arrays(tr_x[..., None], tr_y, te_x, {"V1": np.zeros((5, 6))})
    bad = tr_x.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        from_arrays(bad, tr_y, te_x, {"V1": np.zeros((5, 6))})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        from_arrays(tr_x * 255, tr_y, te_x, {"V1": np.zeros((5, 6))})
    with pytest.raises(ValueError, match="expected"):
        from_arrays(tr_x, tr_y, te_x, {"V1": np.zeros((4, 6))})
    with pytest.raises(ValueError, match="'V2' has no voxels"):
        from_arrays(tr_x, {"V2": np.zeros((12, 0))}, te_x, {"V2": np.zeros((5, 0))})
    with pytest.raises(ValueError, match="ROI 'V1' has no usable voxel"):
        from_arrays(tr_x, {"V1": np.full((12, 3), np.nan)}, te_x, {"V1": np.zeros((5, 3))})
    with pytest.raises(KeyError, match="available ROIs"):
        from_arrays(tr_x, tr_y, te_x, {"V1": np.zeros((5, 6))}).check_roi("LO")


def test_voxel_coords_follow_matlab_column_major_order():
    # MATLAB: linear index 1 + i + j*64 + k*64*64 (1-based) <-> (i, j, k) 0-based
    idx = np.array([1, 2, 65, 64 * 64 + 1, 64 * 64 * 18])
    vox = VoxelInfo(idx, (64, 64, 18), np.eye(4))
    np.testing.assert_array_equal(
        vox.coords, [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [63, 63, 17]]
    )
    with pytest.raises(ValueError, match="1-based"):
        VoxelInfo(np.array([0, 1]), (64, 64, 18), np.eye(4))


def test_npz_round_trip(tmp_path):
    tr_x, tr_y, te_x = _arrays()
    rng = np.random.default_rng(4)
    vox = {
        "V1": VoxelInfo(
            np.arange(10, 16), (8, 8, 2), np.diag([2, 2, 2.5, 1]), {"prf_x": rng.normal(size=6)}
        )
    }
    ds = from_arrays(
        tr_x,
        tr_y,
        te_x,
        test_repeats={"V1": rng.normal(size=(4, 5, 6))},
        test_oracle={"V1": rng.normal(size=(5, 6))},
        voxels=vox,
        name="rt",
        subject=3,
        info={"seed": 7},
    )
    path = save_npz(ds, tmp_path / "ds.npz")
    back = load_npz(path)
    assert (
        isinstance(back, EncodingDataset)
        and back.name == "rt"
        and back.subject == 3
        and back.info["seed"] == 7
    )
    for a, b in [
        (ds.train.stimuli, back.train.stimuli),
        (ds.test.repeats["V1"], back.test.repeats["V1"]),
        (ds.test.oracle["V1"], back.test.oracle["V1"]),
        (ds.voxels["V1"].affine, back.voxels["V1"].affine),
        (ds.voxels["V1"].extra["prf_x"], back.voxels["V1"].extra["prf_x"]),
    ]:
        np.testing.assert_array_equal(a, b)
    assert not list(tmp_path.glob("*.part"))


def test_load_npz_rejects_corrupt_file(tmp_path):
    bad = tmp_path / "broken.npz"
    bad.write_bytes(b"PK\x03\x04 this is not a zip")
    with pytest.raises(ValueError, match="broken.npz"):
        load_npz(bad)
    with pytest.raises(FileNotFoundError):
        load_npz(tmp_path / "missing.npz")


def test_select_rois():
    tr_x, _, te_x = _arrays()
    rng = np.random.default_rng(0)
    ds = from_arrays(
        tr_x,
        {"V1": rng.normal(size=(12, 3)), "V2": rng.normal(size=(12, 4))},
        te_x,
        {"V1": rng.normal(size=(5, 3)), "V2": rng.normal(size=(5, 4))},
    )
    assert ds.select_rois(["V2"]).rois == ["V2"]


# ---------------------------------------------------------------------- bad input, refused up front
def test_test_repeats_with_a_single_trial_are_refused():
    tr_x, tr_y, te_x = _arrays()
    one = {"V1": np.random.default_rng(1).normal(size=(1, 5, 6))}
    with pytest.raises(
        ValueError,
        match=r"R = 1 single trial .* needs R >= 2\. Pass these responses as test_responses",
    ):
        from_arrays(tr_x, tr_y, te_x, test_repeats=one)
    with pytest.raises(ValueError, match="R = 1"):
        from_arrays(tr_x, tr_y, te_x, {"V1": one["V1"][0]}, test_repeats=one)


@pytest.mark.parametrize("given_responses", [True, False])
def test_a_repeats_key_typo_is_refused_and_names_the_nearest_roi(given_responses):
    tr_x, tr_y, te_x = _arrays()
    tr_y["V2"] = np.random.default_rng(2).normal(size=(12, 4))
    rng = np.random.default_rng(1)
    rep = {"v1": rng.normal(size=(3, 5, 6)), "V2": rng.normal(size=(3, 5, 4))}
    responses = {"V1": rep["v1"].mean(0), "V2": rep["V2"].mean(0)} if given_responses else None
    with pytest.raises(
        ValueError,
        match=r"test repeats are given for ROI 'v1'.*\['V1', 'V2'\].*did you mean 'V1'\?",
    ):
        from_arrays(tr_x, tr_y, te_x, responses, test_repeats=rep)
    with pytest.raises(
        ValueError, match=r"test oracle are given for ROI 'V01'.*did you mean 'V1'\?"
    ):
        from_arrays(
            tr_x,
            tr_y,
            te_x,
            {"V1": rep["v1"].mean(0), "V2": rep["V2"].mean(0)},
            test_oracle={"V01": rep["v1"][0]},
        )


def test_test_responses_must_be_the_mean_of_the_repeats():
    tr_x, tr_y, te_x = _arrays()
    rep = np.random.default_rng(1).normal(size=(3, 5, 6))
    other = rep[0].copy()
    with pytest.raises(
        ValueError,
        match=r"ROI 'V1': the test responses are not the mean of the test repeats.*"
        r"test_responses = test_repeats.mean\(axis=0\)",
    ):
        from_arrays(tr_x, tr_y, te_x, {"V1": other}, test_repeats={"V1": rep})
    # the mean itself, in float32 or float64, passes
    for dtype in (np.float32, np.float64):
        r = rep.astype(dtype)
        ds = from_arrays(tr_x, tr_y, te_x, {"V1": r.mean(0)}, test_repeats={"V1": r})
        np.testing.assert_allclose(ds.test.responses["V1"], rep.mean(0), rtol=1e-6)


def test_non_square_images_are_refused_with_a_crop():
    tr_x, tr_y, te_x = _arrays(size=8)
    with pytest.raises(
        ValueError, match=r"train images must be square, got 8 x 6 pixels.*images\[:, 1:7, 0:6\]"
    ):
        from_arrays(tr_x[:, :, :6], tr_y, te_x[:, :, :6], {"V1": np.zeros((5, 6))})


def test_responses_that_are_not_a_dict_are_refused():
    tr_x, tr_y, te_x = _arrays()
    with pytest.raises(
        TypeError,
        match=r"train_responses must be a dict ROI name -> array, got a ndarray of shape "
        r"\(12, 6\); wrap it, e.g. \{'V1': array\}",
    ):
        from_arrays(tr_x, tr_y["V1"], te_x, {"V1": np.zeros((5, 6))})


def test_the_one_check_applies_to_datasets_built_directly():
    """Loaders build EncodingDataset directly: the same check runs (check_dataset)."""
    from etecrm_lib.data.dataset import Split

    tr_x, tr_y, te_x = _arrays()
    with pytest.raises(ValueError, match="R = 1"):
        EncodingDataset(
            "x",
            1,
            Split(tr_x, tr_y),
            Split(te_x, {"V1": np.zeros((5, 6))}, {"V1": np.zeros((1, 5, 6))}),
            {"V1": VoxelInfo(np.arange(1, 7), (6, 1, 1), np.eye(4))},
        )


def _saved(tmp_path, **changes):
    tr_x, tr_y, te_x = _arrays()
    rep = np.random.default_rng(1).normal(size=(3, 5, 6))
    path = save_npz(
        from_arrays(tr_x, tr_y, te_x, test_repeats={"V1": rep}, info={"seed": 1}),
        tmp_path / "ds.npz",
    )
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    for key, value in changes.items():
        key = key.replace("__", "/")
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    edited = tmp_path / "edited.npz"
    np.savez(edited, **arrays)
    return edited


def test_load_npz_explains_an_edited_file(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"edited.npz is damaged or was edited: arrays \['train_responses/V1'\] of the "
        r"ROIs listed in meta_rois \['V1'\] are missing; create it again",
    ):
        load_npz(_saved(tmp_path, train_responses__V1=None))
    with pytest.raises(
        ValueError, match="edited.npz is damaged or was edited: meta_info is not valid JSON"
    ):
        load_npz(_saved(tmp_path, meta_info=np.array("{seed: 1")))
    with pytest.raises(ValueError, match="meta_info is a JSON list, not an object"):
        load_npz(_saved(tmp_path, meta_info=np.array("[1, 2]")))
    with pytest.raises(ValueError, match="meta_subject is .*'one'.*not an integer"):
        load_npz(_saved(tmp_path, meta_subject=np.array("one")))
    with pytest.raises(
        ValueError, match=r"not an etecrm dataset file: arrays \['meta_rois'\] are missing"
    ):
        load_npz(_saved(tmp_path, meta_rois=None))
    rep = np.random.default_rng(1).normal(size=(3, 5, 6))
    with pytest.raises(
        ValueError, match=r"edited.npz: test repeats are given for ROI 'v1'.*did you mean 'V1'"
    ):
        load_npz(_saved(tmp_path, test_repeats__V1=None, test_repeats__v1=rep))


def test_load_npz_explains_a_npy_file(tmp_path):
    np.save(tmp_path / "stimuli.npy", np.zeros((3, 4, 4)))
    with pytest.raises(
        ValueError,
        match=r"stimuli.npy holds one array saved with np.save \(shape \(3, 4, 4\)\), not a "
        r"dataset. Build a dataset with etecrm_lib.data.from_arrays",
    ):
        load_npz(tmp_path / "stimuli.npy")
