"""EncodingDataset: validation, NaN-voxel dropping, npz round trip, clear errors."""

import numpy as np
import pytest

from etecrm_lib.data import EncodingDataset, VoxelInfo, from_arrays, load_npz, save_npz


def _arrays(n_train=12, n_test=5, size=8, n_vox=6, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(size=(n_train, size, size)), {"V1": rng.normal(size=(n_train, n_vox))},
            rng.uniform(size=(n_test, size, size)))


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
    np.testing.assert_array_equal(vox.coords, [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [63, 63, 17]])
    with pytest.raises(ValueError, match="1-based"):
        VoxelInfo(np.array([0, 1]), (64, 64, 18), np.eye(4))


def test_npz_round_trip(tmp_path):
    tr_x, tr_y, te_x = _arrays()
    rng = np.random.default_rng(4)
    vox = {"V1": VoxelInfo(np.arange(10, 16), (8, 8, 2), np.diag([2, 2, 2.5, 1]), {"prf_x": rng.normal(size=6)})}
    ds = from_arrays(tr_x, tr_y, te_x, test_repeats={"V1": rng.normal(size=(4, 5, 6))},
                     test_oracle={"V1": rng.normal(size=(5, 6))}, voxels=vox, name="rt", subject=3, info={"seed": 7})
    path = save_npz(ds, tmp_path / "ds.npz")
    back = load_npz(path)
    assert isinstance(back, EncodingDataset) and back.name == "rt" and back.subject == 3 and back.info["seed"] == 7
    for a, b in [(ds.train.stimuli, back.train.stimuli), (ds.test.repeats["V1"], back.test.repeats["V1"]),
                 (ds.test.oracle["V1"], back.test.oracle["V1"]), (ds.voxels["V1"].affine, back.voxels["V1"].affine),
                 (ds.voxels["V1"].extra["prf_x"], back.voxels["V1"].extra["prf_x"])]:
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
    ds = from_arrays(tr_x, {"V1": rng.normal(size=(12, 3)), "V2": rng.normal(size=(12, 4))}, te_x,
                     {"V1": rng.normal(size=(5, 3)), "V2": rng.normal(size=(5, 4))})
    assert ds.select_rois(["V2"]).rois == ["V2"]
