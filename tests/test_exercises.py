"""Exercise checks (right answers pass, typical wrong answers fail with a helpful message) and the
student-notebook generator."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from etecrm_lib import exercises
from etecrm_lib.exercises import ExerciseError

ROOT = Path(__file__).resolve().parents[1]
INSTRUCTOR = ROOT / "book" / "09_exercises.ipynb"


def solution_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code" and "solution" in c.metadata.get("tags", [])]


def defined_functions(source: str) -> dict:
    """name -> argument names of the top-level functions a cell defines."""
    return {node.name: [a.arg for a in node.args.args]
            for node in ast.parse(source).body if isinstance(node, ast.FunctionDef)}


# --------------------------------------------------------------------------- the checks
def test_instructor_solutions_pass_every_check():
    nb = nbformat.read(INSTRUCTOR, as_version=4)
    namespace = {"np": np, "torch": torch}
    for cell in solution_cells(nb):
        exec(compile(cell.source, "<solution>", "exec"), namespace)
    assert set(exercises.EXERCISES) <= set(namespace), "each exercise needs a solution cell defining it"
    for name, check in exercises.EXERCISES.items():
        assert check(namespace[name]) is True


def test_ridge_reference_agrees_with_closed_form():
    from scipy import linalg

    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(30, 7)), rng.normal(size=30)
    closed_form = linalg.solve(x.T @ x + 3.0 * np.eye(7), x.T @ y, assume_a="pos")
    np.testing.assert_allclose(exercises.ridge_reference(x, y, 3.0), closed_form, rtol=1e-8)


def test_wrong_pearson_r_is_caught_with_a_hint():
    with pytest.raises(ExerciseError, match="Centre both inputs"):
        exercises.check_pearson_r(lambda x, y: (x * y).sum(0) / np.sqrt((x * x).sum(0) * (y * y).sum(0)))
    with pytest.raises(ExerciseError, match="shape"):
        exercises.check_pearson_r(lambda x, y: np.corrcoef(x.T, y.T))
    with pytest.raises(ExerciseError, match="return"):
        exercises.check_pearson_r(lambda x, y: None)


def test_wrong_noise_ceiling_is_caught():
    def biased_noise_variance(repeats):  # ddof=0 underestimates the noise with few repeats
        n = repeats.shape[0]
        noise = repeats.var(axis=0).mean(axis=0)
        signal = np.clip(repeats.mean(axis=0).var(axis=0, ddof=1) - noise / n, 0, None)
        return np.sqrt(signal / (signal + noise / n))

    with pytest.raises(ExerciseError, match="noise_ceiling"):
        exercises.check_noise_ceiling(biased_noise_variance)


def test_wrong_weighted_loss_is_caught():
    def unweighted(x, y, w):
        x, y = x - x.mean(0), y - y.mean(0)
        return 1 - ((x * y).sum(0) / torch.sqrt((x * x).sum(0) * (y * y).sum(0))).mean()

    def through_numpy(x, y, w):  # right value, but no gradient reaches the network
        xn, yn, wn = (t.detach().numpy() for t in (x, y, w))
        xn, yn = xn - xn.mean(0), yn - yn.mean(0)
        r = (xn * yn).sum(0) / np.sqrt((xn * xn).sum(0) * (yn * yn).sum(0))
        return torch.tensor(1 - (wn * r).sum() / wn.sum())

    with pytest.raises(ExerciseError, match="wrong"):
        exercises.check_weighted_correlation_loss(unweighted)
    with pytest.raises(ExerciseError, match="gradient"):
        exercises.check_weighted_correlation_loss(through_numpy)
    with pytest.raises(ExerciseError, match="scalar"):
        exercises.check_weighted_correlation_loss(lambda x, y, w: x.sum(0))


def test_wrong_ridge_is_caught():
    with pytest.raises(ExerciseError, match="np.linalg.solve"):  # least squares ignores alpha
        exercises.check_ridge_one_voxel(lambda x, y, alpha: np.linalg.lstsq(x, y, rcond=None)[0])
    with pytest.raises(ExerciseError, match="wrong"):  # alpha added to every entry, not the diagonal
        exercises.check_ridge_one_voxel(lambda x, y, alpha: np.linalg.solve(x.T @ x + alpha, x.T @ y))


# --------------------------------------------------------------------------- the student notebooks
def test_make_student_notebooks(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "make_student_notebooks.py"), "--out", str(tmp_path)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    instructor = nbformat.read(INSTRUCTOR, as_version=4)
    student = nbformat.read(tmp_path / INSTRUCTOR.name, as_version=4)
    nbformat.validate(student)
    assert len(student.cells) == len(instructor.cells)
    solutions = solution_cells(instructor)
    assert len(solutions) >= len(exercises.EXERCISES)
    for teacher, pupil in zip(instructor.cells, student.cells):
        if teacher in solutions:
            # same functions with the same arguments, but every body only raises
            assert defined_functions(pupil.source) == defined_functions(teacher.source)
            assert "raise NotImplementedError" in pupil.source
            assert "solution" not in pupil.metadata["tags"] and "hide-input" not in pupil.metadata["tags"]
            namespace = {}
            exec(compile(pupil.source, "<student>", "exec"), namespace)
            for name, args in defined_functions(pupil.source).items():
                with pytest.raises(NotImplementedError, match="Exercise"):
                    namespace[name](*[None] * len(args))
            body_lines = {line.strip() for line in teacher.source.splitlines()[2:]} - {""}
            assert not body_lines & set(pupil.source.splitlines()), "part of the solution leaked"
        elif teacher is instructor.cells[0]:
            assert pupil.source.startswith(teacher.source.rstrip()) and "Student version" in pupil.source
        else:
            assert pupil.source == teacher.source and pupil.cell_type == teacher.cell_type


def test_placeholder_for_cell_without_function_and_notebook_without_solutions():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import make_student_notebooks as tool
    finally:
        sys.path.pop(0)
    assert tool.placeholder_source("answer = 42\n", 3) == 'raise NotImplementedError("Exercise 3: write your solution here")\n'
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    with pytest.raises(ValueError, match="no code cell tagged 'solution'"):
        tool.make_student_notebook(nb)
