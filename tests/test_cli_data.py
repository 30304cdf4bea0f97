"""`etecrm data ...`: bad arguments and environment are explained before any work, without a
traceback."""

import pytest

from etecrm_lib.cli import main


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("ETECRM_CACHE", str(folder))
    monkeypatch.delenv("ETECRM_DEBUG", raising=False)
    return folder


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "ETECRM_DEBUG=1" in err
    return err


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["data", "simulate", "--save", "{tmp}"],
            "--save {tmp} is a folder; give a file name in it, e.g. --save {tmp}/sim.npz",
        ),
        (["data", "simulate", "--save", "{tmp}/sim.txt"], "--save {tmp}/sim.txt must end in .npz"),
        (
            ["data", "simulate", "--save", "{tmp}/afile/sim.npz"],
            "{tmp}/afile is a file, not a folder; choose another place",
        ),
        (["data", "simulate", "--subject", "0"], "--subject must be a positive integer, got 0"),
        (
            ["data", "simulate", "--simulation-seed", "-1"],
            "--simulation-seed must be a non-negative integer, got -1",
        ),
        (  # the old spelling still works, with a note
            ["data", "simulate", "--seed", "-1"],
            "--seed is deprecated",
        ),
        (
            ["data", "download", "--dataset", "kay", "--root", "{tmp}/afile"],
            "--root {tmp}/afile is a file",
        ),
        (
            ["data", "describe", "--dataset", "{tmp}/stimuli.npy"],
            "is neither a dataset name (sim, vim1, kay, miyawaki) nor a .npz",
        ),
        (
            ["data", "describe", "--dataset", "{tmp}/missing.npz"],
            "--dataset {tmp}/missing.npz: no such file",
        ),
    ],
)
def test_bad_data_arguments_are_refused_before_any_work(tmp_path, cache, capsys, argv, message):
    (tmp_path / "afile").write_text("x")
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert message.format(tmp=tmp_path) in _error(capsys, argv)
    assert not cache.exists()  # nothing was simulated or downloaded


def test_an_unusable_cache_is_explained_not_a_traceback(tmp_path, monkeypatch, capsys):
    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv("ETECRM_CACHE", str(tmp_path / "afile"))
    monkeypatch.delenv("ETECRM_DEBUG", raising=False)
    err = _error(capsys, ["data", "describe", "--dataset", "sim"])
    assert "afile is a file, not a folder. Set the environment variable ETECRM_CACHE" in err


def test_a_failed_download_is_explained_not_a_traceback(cache, capsys, monkeypatch):
    from etecrm_lib import data
    from etecrm_lib.data.download import DownloadError

    def offline(cache_dir=None):
        raise DownloadError("could not reach https://osf.io/ymnjv/download (no network)")

    monkeypatch.setattr(data, "fetch_kay_images", offline)
    assert "could not reach https://osf.io" in _error(
        capsys, ["data", "download", "--dataset", "kay"]
    )
