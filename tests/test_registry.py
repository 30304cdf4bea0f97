"""load_dataset: the name -> loader dispatch the book and the CLI use (real data are made-up
fixtures)."""

import numpy as np
import pytest
from _fixtures_real import (
    FileServer,
    kay_npz_bytes,
    make_kay_arrays,
    make_vim1_arrays,
    savemat_v5,
    savemat_v73,
)

from etecrm_lib.data import load_dataset
from etecrm_lib.data.kay import fetch_kay_images
from etecrm_lib.data.registry import RealDataConfig


def _vim1_root(root):
    arrays = make_vim1_arrays(size=16, subjects=(1, 2))
    root.mkdir()
    savemat_v5(root / "Stimuli.mat", {k: arrays[k] for k in ("stimTrn", "stimVal")})
    savemat_v73(
        root / "EstimatedResponses.mat",
        {k: v for k, v in arrays.items() if not k.startswith("stim")},
    )
    return root


def test_vim1_uses_the_crcns_files_from_root_or_the_environment(tmp_path, monkeypatch):
    root = _vim1_root(tmp_path / "vim1")
    ds = load_dataset("vim1", subject=2, root=root)
    assert ds.subject == 2 and ds.info["source"].startswith("CRCNS") and ds.image_size == 16
    monkeypatch.setenv("ETECRM_VIM1_DIR", str(root))
    ds = load_dataset("vim1", profile="quick", rois=("V1",), image_size=8)
    assert ds.rois == ["V1"] and ds.image_size == 8 and ds.info["source"].startswith("CRCNS")


def test_vim1_without_crcns_files_uses_the_osf_copy_for_subject_1_only(tmp_path, monkeypatch):
    monkeypatch.delenv("ETECRM_VIM1_DIR", raising=False)
    monkeypatch.setenv("ETECRM_CACHE", str(tmp_path / "cache"))
    arrays = make_kay_arrays(size=128)
    with FileServer({"/k": kay_npz_bytes(arrays)}) as srv:
        fetch_kay_images(url=f"{srv.url}/k", progress=False)  # what the first load would download
    ds = load_dataset("vim1", profile="quick")
    assert ds.info["source"].startswith("Neuromatch") and ds.image_size == 64
    np.testing.assert_array_equal(
        ds.train.responses["V1"], arrays["responses"][:, arrays["roi"] == 1]
    )
    with pytest.raises(ValueError, match="subject 2 is only in the CRCNS files"):
        load_dataset("vim1", subject=2)


def test_vim1_finds_files_that_download_vim1_put_in_the_cache(tmp_path, monkeypatch):
    from etecrm_lib.data import download_vim1

    monkeypatch.delenv("ETECRM_VIM1_DIR", raising=False)
    monkeypatch.setenv("ETECRM_CACHE", str(tmp_path / "cache"))
    src = _vim1_root(tmp_path / "src")
    files = {f"/vim-1/{p.name}": p.read_bytes() for p in src.iterdir()}
    with FileServer(files, crcns=("u", "p")) as srv:
        paths = download_vim1(
            username="u", password="p", base_url=f"{srv.url}/index.php", progress=False
        )
    assert paths[0].parent == tmp_path / "cache" / "vim1"
    ds = load_dataset("vim1", subject=2)
    assert ds.subject == 2 and ds.info["source"].startswith("CRCNS")


def test_kay_is_always_the_osf_copy_with_root_as_its_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("ETECRM_VIM1_DIR", str(tmp_path / "not-used"))
    arrays = make_kay_arrays()
    with FileServer({"/k": kay_npz_bytes(arrays)}) as srv:
        fetch_kay_images(tmp_path / "drive", url=f"{srv.url}/k", progress=False)
    ds = load_dataset("kay", root=tmp_path / "drive", rois=("V3B",))
    np.testing.assert_array_equal(
        ds.train.responses["V3B"], arrays["responses"][:, arrays["roi"] == 5]
    )
    with pytest.raises(ValueError, match="subject 1 only"):
        load_dataset("kay", subject=2, root=tmp_path / "drive")


def test_sim_is_the_simulation(tmp_path, monkeypatch):
    from etecrm_lib.data.calibration import SimulationConfig
    from etecrm_lib.data.simulate import simulate

    monkeypatch.setenv("ETECRM_CACHE", str(tmp_path))
    tiny = SimulationConfig(name="tiny", image_size=32, n_train=10, n_test=3, voxels={"V1": 4})
    ds = load_dataset("sim", profile=tiny, seed=3, cache=False)
    ref = simulate(profile=tiny, seed=3, cache=False)
    np.testing.assert_array_equal(ds.train.responses["V1"], ref.train.responses["V1"])
    np.testing.assert_array_equal(ds.test.repeats["V1"], ref.test.repeats["V1"])


def test_unknown_names_profiles_and_subjects_are_explained(tmp_path):
    with pytest.raises(ValueError, match=r"choose from \['sim', 'vim1', 'kay', 'miyawaki'\]"):
        load_dataset("nsd")
    with pytest.raises(ValueError, match="unknown profile"):
        load_dataset("vim1", profile="huge", root=tmp_path)
    with pytest.raises(ValueError, match="one subject"):
        load_dataset("miyawaki", subject=2)
    assert RealDataConfig.for_profile("quick").vim1_image_size == 64
    assert RealDataConfig.for_profile(None).vim1_image_size is None
