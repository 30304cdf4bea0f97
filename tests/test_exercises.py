"""Exercise checks (right answers pass, typical wrong answers fail with a helpful message) and the
student-notebook generator."""

from __future__ import annotations

import ast
import re
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
INSTRUCTOR = ROOT / "book" / "10_exercises.ipynb"
STUDENT = ROOT / "students" / "10_exercises.ipynb"


def solution_cells(nb) -> list:
    return [
        c for c in nb.cells if c.cell_type == "code" and "solution" in c.metadata.get("tags", [])
    ]


def defined_functions(source: str) -> dict:
    """name -> argument names of the top-level functions a cell defines."""
    return {
        node.name: [a.arg for a in node.args.args]
        for node in ast.parse(source).body
        if isinstance(node, ast.FunctionDef)
    }


# --------------------------------------------------------------------------- the checks
def test_instructor_solutions_pass_every_check(capsys):
    nb = nbformat.read(INSTRUCTOR, as_version=4)
    from etecrm_lib import evaluation

    namespace = {"np": np, "torch": torch, "evaluation": evaluation}
    for cell in solution_cells(nb):
        exec(compile(cell.source, "<solution>", "exec"), namespace)
    assert set(exercises.EXERCISES) <= set(namespace), (
        "each exercise needs a solution cell defining it"
    )
    for name, check in exercises.EXERCISES.items():
        check(namespace[name])  # raises ExerciseError on a wrong answer
    assert capsys.readouterr().out.count("Correct: ") == len(exercises.EXERCISES)


def test_ridge_reference_agrees_with_closed_form():
    from scipy import linalg

    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(30, 7)), rng.normal(size=30)
    closed_form = linalg.solve(x.T @ x + 3.0 * np.eye(7), x.T @ y, assume_a="pos")
    np.testing.assert_allclose(exercises.ridge_reference(x, y, 3.0), closed_form, rtol=1e-8)


def test_wrong_pearson_r_is_caught_with_a_hint():
    with pytest.raises(ExerciseError, match="Centre both inputs"):
        exercises.check_pearson_r(
            lambda x, y: (x * y).sum(0) / np.sqrt((x * x).sum(0) * (y * y).sum(0))
        )
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
    def mean_r(x, y):  # the plain correlation loss: no cube
        x, y = x - x.mean(0), y - y.mean(0)
        return -((x * y).sum(0) / torch.sqrt((x * x).sum(0) * (y * y).sum(0))).mean()

    def squared(x, y):  # r ** 2 loses the sign of anticorrelated voxels
        x0, y0 = x - x.mean(0), y - y.mean(0)
        r = (x0 * y0).sum(0) / torch.sqrt((x0 * x0).sum(0) * (y0 * y0).sum(0))
        return -(r**2).mean() + 1e-4 * x.mean()

    def no_mean_term(x, y):
        x0, y0 = x - x.mean(0), y - y.mean(0)
        return -(((x0 * y0).sum(0) / torch.sqrt((x0 * x0).sum(0) * (y0 * y0).sum(0))) ** 3).mean()

    def through_numpy(x, y):  # right value, but no gradient reaches the network
        xn, yn = x.detach().numpy(), y.detach().numpy()
        x0, y0 = xn - xn.mean(0), yn - yn.mean(0)
        r = (x0 * y0).sum(0) / np.sqrt((x0 * x0).sum(0) * (y0 * y0).sum(0))
        return torch.tensor(-(r**3).mean() + 1e-4 * xn.mean())

    for wrong in (mean_r, squared, no_mean_term):
        with pytest.raises(ExerciseError, match="wrong"):
            exercises.check_weighted_correlation_loss(wrong)
    with pytest.raises(ExerciseError, match="gradient"):
        exercises.check_weighted_correlation_loss(through_numpy)
    with pytest.raises(ExerciseError, match="scalar"):
        exercises.check_weighted_correlation_loss(lambda x, y: x.sum(0))


def test_loss_reference_agrees_with_an_independent_formula():
    """-mean(r^3) + 1e-4 mean(pred), with r from numpy's corrcoef (a second, independent route)."""
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(32, 5)), rng.normal(size=(32, 5))
    r = np.array([np.corrcoef(x[:, v], y[:, v])[0, 1] for v in range(5)])
    got = exercises.etecrm_loss_reference(torch.as_tensor(x), torch.as_tensor(y))
    assert float(got) == pytest.approx(-np.mean(r**3) + 1e-4 * x.mean(), abs=1e-12)


def test_wrong_prediction_noise_is_caught():
    def always(p, training, noise_std=1.0):  # noise at evaluation too
        return p + noise_std * torch.randn_like(p)

    def in_place(p, training, noise_std=1.0):
        if training:
            p += noise_std * torch.randn_like(p)
        return p

    def wrong_scale(p, training, noise_std=1.0):  # variance instead of standard deviation
        return p + noise_std**2 * torch.randn_like(p) if training else p

    def fixed(p, training, noise_std=1.0):  # the same noise every call
        g = torch.Generator().manual_seed(0)
        return p + noise_std * torch.randn(p.shape, generator=g, dtype=p.dtype) if training else p

    def detached(p, training, noise_std=1.0):
        return (p + noise_std * torch.randn_like(p)).detach() if training else p

    cases = {
        always: "training=False",
        in_place: "in place",
        wrong_scale: "s.d.",
        fixed: "same noise",
        detached: "gradient",
    }
    for wrong, message in cases.items():
        with pytest.raises(ExerciseError, match=message):
            exercises.check_add_prediction_noise(wrong)


def test_wrong_verdict_and_comparison_are_caught():
    from etecrm_lib.evaluation import EncodingResult

    with pytest.raises(ExerciseError, match="interval"):  # reads the difference, not the interval
        exercises.check_verdict(lambda c: "better" if c.difference > 0 else "worse")
    with pytest.raises(ExerciseError, match="touches"):  # an interval touching 0 is no evidence
        exercises.check_verdict(
            lambda c: (
                "better"
                if c.ci_low >= 0
                else "worse"
                if c.ci_high <= 0
                else "no reliable difference"
            )
        )
    rng = np.random.default_rng(0)
    y = rng.normal(size=(40, 30))
    a = EncodingResult(
        "etecrm", "V1", "sim", 1, np.zeros(30), predictions=y + rng.normal(size=y.shape)
    )
    b = EncodingResult(
        "etecrm_no_noise",
        "V1",
        "sim",
        1,
        np.zeros(30),
        predictions=y + 2 * rng.normal(size=y.shape),
    )
    right = evaluation_paired(a, b, y, seed=0)
    exercises.check_ablation_comparison(right, a, b, y, seed=0)  # no error: the right call
    with pytest.raises(ExerciseError, match="full model first"):
        exercises.check_ablation_comparison(evaluation_paired(b, a, y, seed=0), a, b, y, seed=0)
    with pytest.raises(
        ExerciseError, match="ci_low|difference"
    ):  # other test responses: other numbers
        exercises.check_ablation_comparison(
            evaluation_paired(a, b, y[::-1] * 0 + rng.normal(size=y.shape), seed=0), a, b, y, seed=0
        )


def evaluation_paired(a, b, y, seed):
    from etecrm_lib.evaluation import paired_bootstrap

    return paired_bootstrap(a, b, y, "median_r", n_bootstrap=1000, seed=seed)


def test_wrong_top_k_is_caught():
    with pytest.raises(ExerciseError, match="argsort"):  # the k worst instead of the k best
        exercises.check_top_k_mean_r(lambda s, r, k: float(np.mean(r[np.argsort(s)[:k]])))
    with pytest.raises(ExerciseError, match="argsort"):  # averages select_r instead of report_r
        exercises.check_top_k_mean_r(lambda s, r, k: float(np.mean(s[np.argsort(-s)[:k]])))


def test_wrong_ridge_is_caught():
    with pytest.raises(ExerciseError, match="np.linalg.solve"):  # least squares ignores alpha
        exercises.check_ridge_one_voxel(lambda x, y, alpha: np.linalg.lstsq(x, y, rcond=None)[0])
    with pytest.raises(
        ExerciseError, match="wrong"
    ):  # alpha added to every entry, not the diagonal
        exercises.check_ridge_one_voxel(
            lambda x, y, alpha: np.linalg.solve(x.T @ x + alpha, x.T @ y)
        )


# --------------------------------------------------------------------------- the student notebooks
def load_tool():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import make_student_notebooks as tool
    finally:
        sys.path.pop(0)
    return tool


def test_make_student_notebooks(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "make_student_notebooks.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    instructor = nbformat.read(INSTRUCTOR, as_version=4)
    student = nbformat.read(tmp_path / INSTRUCTOR.name, as_version=4)
    nbformat.validate(student)
    teacher_cells = [c for c in instructor.cells if "instructor" not in c.metadata.get("tags", [])]
    assert len(teacher_cells) < len(instructor.cells), (
        "the instructor note should not reach the students"
    )
    assert len(student.cells) == len(teacher_cells)
    solutions = solution_cells(instructor)
    assert len(solutions) >= 11
    assert {name for cell in solutions for name in defined_functions(cell.source)} >= set(
        exercises.EXERCISES
    )
    for teacher, pupil in zip(teacher_cells, student.cells):
        if teacher in solutions:
            # same functions with the same arguments, but every body only raises
            assert defined_functions(pupil.source) == defined_functions(teacher.source)
            assert "raise NotImplementedError" in pupil.source
            assert (
                "solution" not in pupil.metadata["tags"]
                and "hide-input" not in pupil.metadata["tags"]
            )
            namespace = {}
            exec(compile(pupil.source, "<student>", "exec"), namespace)
            for name, args in defined_functions(pupil.source).items():
                with pytest.raises(NotImplementedError, match="Exercise"):
                    namespace[name](*[None] * len(args))
            body_lines = {line.strip() for line in teacher.source.splitlines()} - {
                line.strip() for line in pupil.source.splitlines()
            }
            # a line of brackets alone (the formatter's closing ")") gives nothing away
            body_lines = {line for line in body_lines if line.strip("()[]{},: ")}
            assert body_lines, "the solution should differ from the placeholder"
            assert not body_lines & {
                line.strip() for c in student.cells for line in c.source.splitlines()
            }, "part of the solution leaked"
        elif teacher is instructor.cells[0]:
            from etecrm_lib.notebooks import colab_url

            assert colab_url(INSTRUCTOR.name, folder="students") in pupil.source
            assert colab_url(INSTRUCTOR.name) not in pupil.source, (
                "the student badge must open the student notebook"
            )
            assert "Student edition" in pupil.source
        else:
            assert pupil.source == teacher.source and pupil.cell_type == teacher.cell_type
    for name in ("_config.yml", "_toc.yml", "intro.md"):
        assert (tmp_path / name).is_file()


def test_committed_student_notebooks_are_up_to_date():
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "make_student_notebooks.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, f"run `make students` and commit students/: {done.stderr}"
    student = nbformat.read(STUDENT, as_version=4)
    for cell in student.cells:
        assert cell.cell_type != "code" or (cell.outputs == [] and cell.execution_count is None)
        assert "solution" not in cell.metadata.get(
            "tags", []
        ) and "instructor" not in cell.metadata.get("tags", [])


def test_every_exercise_has_objectives_time_and_hints_up_front():
    nb = nbformat.read(INSTRUCTOR, as_version=4)
    exercises_md = [
        c.source
        for c in nb.cells
        if c.cell_type == "markdown" and c.source.startswith("## Exercise")
    ]
    assert len(exercises_md) == 11 and len(exercises.EXERCISES) == 12  # exercise 9: two functions
    for text in exercises_md:
        title = text.splitlines()[0]
        assert "**You will learn**" in text, f"{title}: no learning objective"
        assert re.search(r"\*\*Time:\*\* about \d+ minutes", text), f"{title}: no time estimate"
        assert "**Hints.**" in text and "\n- " in text.split("**Hints.**")[1], (
            f"{title}: no hints before the solution"
        )
        assert "```{exercise}" in text


def test_placeholder_for_cell_without_function_and_notebook_without_solutions():
    tool = load_tool()
    assert (
        tool.placeholder_source("answer = 42\n", 3)
        == 'raise NotImplementedError("Exercise 3: write your solution here")\n'
    )
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    with pytest.raises(ValueError, match="no code cell tagged 'solution'"):
        tool.make_student_notebook(nb)


def test_wrong_layer_choice_is_caught():
    with pytest.raises(ExerciseError, match="Validation r decides"):  # chosen on test r
        exercises.check_layer_choice(lambda val_r, test_r: test_r.max(axis=0))
    with pytest.raises(ExerciseError, match="shape"):  # the layer index, not its test r
        exercises.check_layer_choice(lambda val_r, test_r: np.argmax(val_r, axis=0)[None])


def test_parameter_count_reference_matches_the_library_network():
    from etecrm_lib.models import ETECRMNet

    for size, voxels, channels, layers in [(64, 120, 128, 3), (32, 7, 16, 2), (16, 3, 4, 1)]:
        net = ETECRMNet(n_voxels=voxels, image_size=size, channels=channels, n_layers=layers)
        expected = exercises.parameter_count_reference(size, voxels, channels, layers)
        assert sum(p.numel() for p in net.parameters()) == expected


def test_wrong_parameter_count_is_caught():
    def no_biases(size, voxels, channels, layers):
        c_in, total = 1, 0
        for _ in range(layers):
            total, c_in, size = total + c_in * channels * 9, channels, size // 2
        return total + c_in * size * size * voxels

    def no_stride(size, voxels, channels, layers):  # the side never shrinks
        c_in, total = 1, 0
        for _ in range(layers):
            total, c_in = total + c_in * channels * 9 + channels, channels
        return total + c_in * size * size * voxels + voxels

    for wrong in (no_biases, no_stride):
        with pytest.raises(ExerciseError, match="expected"):
            exercises.check_parameter_count(wrong)


def test_voxel_pull_reference_is_autograd_and_wrong_pulls_are_caught():
    r = torch.tensor([0.8, -0.3, 0.02, 0.5], dtype=torch.float64, requires_grad=True)
    (-(r**3).mean()).backward()
    np.testing.assert_allclose(exercises.pull_reference(r.detach().numpy()), -r.grad.numpy())
    for wrong in (lambda r: 3 * r**2, lambda r: 3 * r / r.size, lambda r: -3 * r**2 / r.size):
        with pytest.raises(ExerciseError, match="wrong"):
            exercises.check_voxel_pull(wrong)


def test_wrong_first_size_ahead_is_caught():
    def first_crossing(sizes, a, b):  # the first size where A is ahead, even if it falls back
        return next((s for s, x, y in zip(sizes, a, b) if x > y), None)

    def ties_count(sizes, a, b):
        first = None
        for s, x, y in reversed(list(zip(sizes, a, b))):
            if x < y:
                break
            first = s
        return first

    for wrong in (first_crossing, ties_count):
        with pytest.raises(ExerciseError, match="expected"):
            exercises.check_first_size_ahead(wrong)
    assert exercises.first_size_ahead_reference([1, 2, 3], [0, 1, 2], [1, 1, 1]) == 3


def test_wrong_compare_ablation_is_caught():
    from etecrm_lib.evaluation import paired_bootstrap

    def reversed_order(full, ablated, y, seed=0):
        return paired_bootstrap(ablated, full, y, "median_r", n_bootstrap=1000, seed=seed)

    def other_statistic(full, ablated, y, seed=0):
        return paired_bootstrap(full, ablated, y, "mean_r", n_bootstrap=1000, seed=seed)

    with pytest.raises(ExerciseError, match="full model first"):
        exercises.check_compare_ablation(reversed_order)
    with pytest.raises(ExerciseError, match="median r"):
        exercises.check_compare_ablation(other_statistic)
