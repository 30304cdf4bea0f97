"""Colab as readers meet it: the chapters' set-up cell, and one rule for finding committed results.

The slow test simulates Colab end to end: a fake ``google.colab`` module, a local bare repository
standing in for GitHub (git's ``url.<base>.insteadOf`` sends the set-up cell's real URL there), a
fresh virtual environment outside the checkout whose "preinstalled" packages are this one's (as
Colab's torch is there before the cell runs), then a chapter run to its end.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from etecrm_lib import book, notebooks

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- the results rule
def _results(folder: Path) -> Path:
    (folder / "results").mkdir(parents=True)
    return folder


def test_results_folder_prefers_the_environment_variable(monkeypatch, tmp_path):
    monkeypatch.setenv(book.RESULTS_ENV, str(_results(tmp_path / "mine")))
    assert book.results_folder() == tmp_path / "mine"
    monkeypatch.setenv(book.RESULTS_ENV, str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match="ETECRM_RESULTS=.*absent is not a folder"):
        book.results_folder()


def test_results_folder_falls_back_to_the_folder_pip_installed_from(monkeypatch, tmp_path):
    """A non-editable install from a clone (the Colab cell) records the clone in direct_url.json."""
    from importlib import metadata

    class Installed:
        def __init__(self, recorded):
            self.recorded = recorded

        def read_text(self, name):
            return json.dumps(self.recorded) if name == "direct_url.json" else None

    clone = tmp_path / "clone"
    _results(clone / "data" / "results")
    monkeypatch.delenv(book.RESULTS_ENV, raising=False)
    monkeypatch.setattr(
        book, "__file__", str(tmp_path / "site-packages" / "etecrm_lib" / "book.py")
    )
    recorded = {"url": clone.as_uri(), "dir_info": {}}
    monkeypatch.setattr(metadata, "distribution", lambda name: Installed(recorded))
    assert book.installed_from() == clone
    assert book.results_folder() == clone / "data" / "results"
    # installed from a URL: nothing local, and the note says where it looked
    recorded = {"url": "https://github.com/x/y", "vcs_info": {"vcs": "git"}}
    monkeypatch.setattr(metadata, "distribution", lambda name: Installed(recorded))
    assert book.installed_from() is None
    assert not (book.results_folder() / "results").exists()
    note = book.missing_results_note()
    assert "$ETECRM_RESULTS: not set" in note and "site-packages" in note
    assert book.committed_run() is None and book.committed_results() == []


def test_set_up_cell_uses_the_books_repository_and_ref():
    url, ref = notebooks.book_repository()
    source = notebooks.setup_cell_source("04_end_to_end.ipynb")
    assert f'REPOSITORY, REF = "{url}", "{ref}"' in source
    compile(source, "<set-up cell>", "exec")  # plain Python: no shell magics
    scope = {}
    exec(source, scope)  # outside Colab it does nothing
    assert "CLONE" not in scope


# ----------------------------------------------------------------------------- the estimate
def test_a_chapters_estimate_is_its_measured_epoch_times_its_trainings():
    from etecrm_lib import estimates
    from etecrm_lib.training import ETECRMConfig

    got = estimates.chapter_estimate("05_voxel_weights", "quick", device="cpu")
    epochs = ETECRMConfig.for_profile("quick").epochs
    assert got["trainings"] == 3 and got["precision"] == "fp32" and got["epoch_seconds"] > 0
    assert got["minutes"] == pytest.approx(3 * epochs * got["epoch_seconds"] / 60)
    assert estimates.chapter_estimate("02_gabor_ridge", "quick", device="cpu")["minutes"] == 0
    assert set(estimates.CHAPTER_WORK) <= {Path(c).stem for c in notebooks.toc_chapters(ROOT)}


def test_check_runtime_on_a_t4_prints_fp16_and_the_measured_estimate(monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla T4")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (7, 5))
    monkeypatch.setattr(book, "estimate_sentence", lambda chapter, device: f"measured {chapter}")
    monkeypatch.delenv(book.PROFILE_ENV, raising=False)
    book.check_runtime("08_comparison")
    out = capsys.readouterr().out
    assert (
        "device: Tesla T4" in out
        and "precision: fp16, profile: full" in out
        and "measured 08_comparison" in out
    )
    assert 'PROFILE = "quick"' in out


# ----------------------------------------------------------------------------- simulated Colab
def _github(tmp: Path, ref: str) -> Path:
    """A bare repository of the working tree's files (tracked and new, not ignored) on ``ref``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    src = tmp / "src"
    for name in filter(None, listed):
        path = ROOT / name.decode()
        if path.is_file():
            (src / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, src / name.decode())
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.org"]
    subprocess.run(git + ["init", "-q", "-b", ref], cwd=src, check=True)
    subprocess.run(git + ["add", "-A"], cwd=src, check=True)
    subprocess.run(git + ["commit", "-q", "-m", "the book"], cwd=src, check=True)
    subprocess.run(["git", "clone", "-q", "--bare", src, tmp / "etecrm.git"], check=True)
    return tmp / "etecrm.git"


def _colab_python(tmp: Path) -> Path:
    """A fresh venv whose preinstalled packages are this environment's (without etecrm_lib) and
    whose every Python process has imported a fake ``google.colab``."""
    venv = tmp / "venv"
    subprocess.run([Path(sys.base_prefix) / "bin" / "python3", "-m", "venv", venv], check=True)
    preinstalled = tmp / "preinstalled"
    preinstalled.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith(("etecrm", "__editable__", "_etecrm")):
            (preinstalled / entry.name).symlink_to(entry)
    fake = tmp / "fake" / "google" / "colab"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        '"""Stand-in for Colab\'s module (imported at start-up)."""\n'
    )
    python = venv / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(site) / "colab_preinstalled.pth").write_text(f"{preinstalled}\n{fake.parents[1]}\n")
    (Path(site) / "zz_colab.pth").write_text("import google.colab\n")
    return python


# The quickest of chapters 4-8 that read the committed run: about 70 s of its own on 2 idle cores
# (three quick trainings), 703 s on 2 cores shared with about 10 other busy processes.
CHAPTER = "05_voxel_weights.ipynb"

RUN_CHAPTER = """\
import sys, nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(nb, timeout=1800, kernel_name="python3").execute()
nbformat.write(nb, sys.argv[2])
"""


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_a_chapter_runs_on_simulated_colab_and_shows_the_committed_run(tmp_path):
    url, ref = notebooks.book_repository()
    bare = _github(tmp_path, ref)
    gitconfig = tmp_path / "gitconfig"
    gitconfig.write_text(f'[url "{bare.as_uri()}"]\n\tinsteadOf = {url}\n')
    python = _colab_python(tmp_path)
    content = tmp_path / "content"  # Colab's working folder
    content.mkdir()
    shutil.copy(ROOT / "book" / CHAPTER, content)
    env = {k: v for k, v in os.environ.items() if k not in (book.RESULTS_ENV, "PYTHONPATH")}
    env.update(
        GIT_CONFIG_GLOBAL=str(gitconfig),
        ETECRM_PROFILE="quick",
        PATH=f"{python.parent}{os.pathsep}{env['PATH']}",
        VIRTUAL_ENV=str(python.parents[1]),
    )
    run = subprocess.run(
        [python, "-c", RUN_CHAPTER, CHAPTER, "out.ipynb"],
        cwd=content,
        env=env,
        capture_output=True,
        text=True,
        timeout=2400,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    import nbformat

    nb = nbformat.read(content / "out.ipynb", as_version=4)
    text = "\n".join(
        str(out.get("text", "")) + str(out.get("data", {}).get("text/plain", ""))
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
    )
    assert "etecrm_lib" in text and "profile: quick" in text  # check_runtime ran in the set-up cell
    assert "No committed results found" not in text and "is not in" not in text, text[-2000:]
    assert (content / "etecrm" / "data" / "results" / "results").is_dir()  # the shallow clone
    # every chapter 4-8 reads the committed run through the same rule: ask it from elsewhere
    check = textwrap.dedent("""\
        from etecrm_lib import book
        run = book.committed_run(subject=1)
        print(book.results_folder(), len(run.results))
    """)
    found = subprocess.run(
        [python, "-c", check], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert found[0] == str(content / "etecrm" / "data" / "results") and int(found[1]) > 0


# ----------------------------------------------------------------------------- packaging
def test_environment_yml_lists_every_dependency_of_pyproject():
    """conda users get what pip users get: the library's, the book's and the tests' packages."""
    import re

    import yaml

    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + [
        r for extra in project["optional-dependencies"].values() for r in extra
    ]

    def name(requirement: str) -> str:
        return (
            re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")
        )

    conda = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    listed = {name(d) for d in conda if isinstance(d, str)}
    listed |= {name(d) for d in conda if isinstance(d, dict) for d in d["pip"]}
    missing = sorted({name(r) for r in wanted} - listed)
    assert not missing, f"environment.yml lacks {missing} (pyproject.toml has them)"
    assert isinstance(project["license"], str)  # the PEP 639 form, not the deprecated table


# ----------------------------------------------------------------------------- the terminal
def test_reproduce_and_datasize_print_the_answer_on_the_terminal(capsys):
    """``etecrm reproduce`` ends with median r per ROI and the verdicts; ``datasize`` with its
    crossing table (here on the committed full run)."""
    from etecrm_lib.cli import print_run_summary
    from etecrm_lib.data_size import crossing_sentences, read_curves
    from etecrm_lib.tables import load_run
    from etecrm_lib.verdicts import crossing_table

    folder = ROOT / "data" / "results"
    run = load_run(folder, "sim", "full", 1, 0)
    print_run_summary(folder, run.results[0])
    out = capsys.readouterr().out
    assert "median test r, mean over seeds" in out and "etecrm − gwp_ridge" in out
    assert all(roi in out for roi in ("V1", "V2", "V3", "V4", "LO")) and "ensemble" not in out
    rows = read_curves(folder / "data_size")["crossings"]
    report = repr(crossing_table(rows)) + "\n".join(crossing_sentences(rows))
    assert report.splitlines()[0].startswith("ROI") and "reliably ahead at" in report


def test_old_profile_names_still_work_with_a_deprecation_note():
    from etecrm_lib.profiles import check_profile

    with pytest.warns(DeprecationWarning, match="'default' is an old name of 'full'"):
        assert check_profile("default") == "full"
    readme = (ROOT / "README.md").read_text()
    assert 'profile="default"' not in readme and ".venv/bin/etecrm reproduce" not in readme
