"""Running the book as a course: the guide at the top of each chapter, and grading submitted work.

Every chapter 1-9 opens, right after its title, with a short *course guide* cell (learning
objectives, prerequisites, time, and its exercises in ``book/10_exercises.ipynb``), made from the
one table :data:`GUIDES` by :func:`guide_source`; ``python tools/course_guides.py`` writes (or
updates) those cells and ``tests/test_course.py`` checks that they match the table.

Grading: :func:`grade_folder` runs the checks of :mod:`etecrm_lib.exercises` on every submitted
notebook of a folder and :func:`write_grades` writes one CSV row per student and exercise
(``python tools/grade.py SUBMISSIONS --out grades.csv``). The students' answer cells are run in
this Python process: grade in a container or a throw-away account, as with any student code.
"""

from __future__ import annotations

import contextlib
import csv
import io
from dataclasses import astuple, dataclass, fields
from pathlib import Path

import numpy as np

from . import evaluation, exercises
from .storage import atomic_write

GUIDE_ID = "course-guide"  # the cell id (and tag) of the guide cell in each chapter
EXERCISES_NOTEBOOK = "10_exercises.ipynb"
ANSWER_TAGS = ("answer", "solution")  # the student edition's answer cells; the instructor's


@dataclass(frozen=True)
class ChapterGuide:
    """What a chapter teaches, what it needs, how long it takes, and its exercises.

    objectives : what a student can do after it (each ends "After this chapter you can ...")
    prerequisites : chapters and knowledge assumed
    minutes : reading and running the chapter (quick profile on a CPU)
    exercises : numbers of its exercises in ``10_exercises.ipynb``
    exercise_minutes : time for those exercises
    """

    objectives: tuple
    prerequisites: str
    minutes: int
    exercises: tuple
    exercise_minutes: int


GUIDES = {
    "01_data": ChapterGuide(
        (
            "say what a visual encoding model predicts, and measure its accuracy as one Pearson r "
            "per voxel on held-out images;",
            "estimate a voxel's noise ceiling from repeated presentations and read a model's "
            "accuracy against it;",
            "describe the simulated cortex, how it is calibrated to vim-1, and where it differs.",
        ),
        "Python with numpy; mean, variance and correlation. No neuroscience is assumed.",
        40,
        (1, 2),
        25,
    ),
    "02_gabor_ridge": ChapterGuide(
        (
            "build Gabor energy features and say why a phase-invariant energy suits V1;",
            "fit voxel-wise ridge regression with its penalty chosen on training images only;",
            "check what a fitted model learned (receptive-field positions) against the truth.",
        ),
        "Chapter 1; linear regression (least squares).",
        40,
        (3,),
        25,
    ),
    "03_cnn_features": ChapterGuide(
        (
            "read out a CNN layer's activations with forward hooks;",
            "choose a layer for each voxel on validation data, never on the test images;",
            "compare two models with a paired bootstrap interval over the test images.",
        ),
        "Chapter 2; what a convolution and a ReLU compute.",
        35,
        (4,),
        15,
    ),
    "04_end_to_end": ChapterGuide(
        (
            "describe ETECRM's network (three convolutions, a squared read-out) and say where its "
            "parameters sit;",
            "write its training loop, with the epoch chosen on validation images;",
            "read held-out accuracy over model seeds, with intervals.",
        ),
        "Chapters 1-3; PyTorch basics (tensors, autograd, an optimizer step).",
        45,
        (5,),
        15,
    ),
    "05_voxel_weights": ChapterGuide(
        (
            "derive the self-adapting voxel weights r^2 hidden in the loss -mean(r^3);",
            "follow the weights while a network trains;",
            "judge from the committed evidence what the weights change, and what they do not.",
        ),
        "Chapter 4; derivatives and the chain rule.",
        35,
        (6,),
        15,
    ),
    "06_weighted_correlation_loss": ChapterGuide(
        (
            "write the three losses (weighted correlation, plain correlation, MSE) in torch;",
            "explain why plain MSE can collapse and how the trainer guards against it;",
            "read an ablation's verdict from its interval.",
        ),
        "Chapters 4-5.",
        35,
        (7,),
        20,
    ),
    "07_noise_regularization": ChapterGuide(
        (
            "add noise to the predictions in training only, and say why it favours large, "
            "confident predictions;",
            "test whether it helps on held-out images with a paired bootstrap;",
            "say what an interval that contains zero does and does not mean.",
        ),
        "Chapters 4-6.",
        35,
        (8, 9),
        35,
    ),
    "08_comparison": ChapterGuide(
        (
            "compare ETECRM with a two-step baseline chosen on validation data, over seeds, with "
            "intervals over test images and seeds;",
            "read the verdict of each part of selective optimization;",
            "explain the winner's curse, and why the test images are used only once.",
        ),
        "Chapters 2-7.",
        45,
        (10,),
        15,
    ),
    "09_data_size": ChapterGuide(
        (
            "read learning curves: accuracy against the number of training images;",
            "find where two curves cross, and say how sure that crossing is;",
            "relate the simulation's answer to the 1750 training images of vim-1.",
        ),
        "Chapter 8.",
        30,
        (11,),
        15,
    ),
}


def guide_source(chapter: str) -> str:
    """The markdown of a chapter's guide cell (``chapter``: a notebook stem, e.g. "01_data")."""
    if chapter not in GUIDES:
        raise KeyError(f"no course guide for {chapter!r}; chapters with one: {sorted(GUIDES)}")
    guide = GUIDES[chapter]
    numbers = [str(n) for n in guide.exercises]
    which = numbers[0] if len(numbers) == 1 else ", ".join(numbers[:-1]) + " and " + numbers[-1]
    word, verb = ("Exercise", "takes") if len(numbers) == 1 else ("Exercises", "take")
    objectives = "\n".join(f"- {line}" for line in guide.objectives)
    return (
        f"**Learning objectives.** After this chapter you can\n{objectives}\n\n"
        f"**Prerequisites.** {guide.prerequisites}\n\n"
        f"**Time.** About {guide.minutes} minutes to read and run (quick profile, on a CPU). "
        f"{word} {which} in [the exercises]({EXERCISES_NOTEBOOK}) {verb} about "
        f"{guide.exercise_minutes} minutes more.\n"
    )


def with_guide_cell(nb, chapter: str):
    """Notebook ``nb`` (nbformat) with its guide cell right after the title (added or updated).

    Nothing else in the notebook changes. Returns ``nb``.
    """
    import nbformat.v4 as nbf

    source = guide_source(chapter)
    existing = [i for i, cell in enumerate(nb.cells) if cell.get("id") == GUIDE_ID]
    if existing:
        nb.cells[existing[0]].source = source
        if existing[0] != 1:
            nb.cells.insert(1, nb.cells.pop(existing[0]))
        return nb
    cell = nbf.new_markdown_cell(source, metadata={"tags": [GUIDE_ID]})
    cell["id"] = GUIDE_ID
    nb.cells.insert(1, cell)
    return nb


# --------------------------------------------------------------------------- grading
@dataclass(frozen=True)
class Grade:
    """One student's result on one exercise (one CSV row)."""

    student: str
    exercise: str
    passed: bool
    message: str


def run_answers(nb) -> tuple:
    """Run the answer cells of notebook ``nb``; returns (namespace, {cell number: error message}).

    Answer cells are the code cells tagged "answer" (student edition) or "solution" (instructor).
    They see ``np``, ``torch`` and ``evaluation``, as in the exercises notebook.
    """
    import torch

    namespace = {"np": np, "torch": torch, "evaluation": evaluation, "__name__": "submission"}
    errors = {}
    for number, cell in enumerate(nb.cells):
        tags = cell.metadata.get("tags", [])
        if cell.cell_type != "code" or not any(tag in tags for tag in ANSWER_TAGS):
            continue
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                exec(compile(cell.source, f"<answer cell {number}>", "exec"), namespace)
        except Exception as error:  # a broken cell is a grade, not a crash of the grader
            errors[number] = f"answer cell {number} failed: {type(error).__name__}: {error}"
    return namespace, errors


def grade_notebook(path, student: str | None = None) -> list:
    """Run every exercise's check on the answers in notebook ``path``: one :class:`Grade` each."""
    import nbformat

    path = Path(path)
    student = student or path.stem
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as error:
        message = f"cannot read the notebook {path.name}: {type(error).__name__}: {error}"
        return [Grade(student, name, False, message) for name in exercises.EXERCISES]
    namespace, errors = run_answers(nb)
    grades = []
    for name, check in exercises.EXERCISES.items():
        if not callable(namespace.get(name)):
            missing = f"no function {name}() defined in an answer cell"
            message = "; ".join([missing, *errors.values()])
            grades.append(Grade(student, name, False, message))
            continue
        printed = io.StringIO()
        try:
            with contextlib.redirect_stdout(printed):
                check(namespace[name])
            grades.append(Grade(student, name, True, printed.getvalue().strip()))
        except NotImplementedError:
            grades.append(Grade(student, name, False, "not answered (NotImplementedError)"))
        except Exception as error:  # ExerciseError, or the student's code failing
            kind = "" if isinstance(error, exercises.ExerciseError) else type(error).__name__ + ": "
            grades.append(Grade(student, name, False, f"{kind}{error}"))
    return grades


def submitted_notebooks(folder) -> dict:
    """``{student: notebook path}`` for a folder of submissions.

    A notebook directly in ``folder`` is named after its file (``alice.ipynb`` -> "alice"); one in a
    sub-folder after that sub-folder (``alice/10_exercises.ipynb`` -> "alice").
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder of submissions at {folder}: give the folder's path")
    found = {}
    for path in sorted(folder.rglob("*.ipynb")):
        if ".ipynb_checkpoints" in path.parts:
            continue
        relative = path.relative_to(folder)
        student = relative.stem if len(relative.parts) == 1 else relative.parts[0]
        if student in found:
            raise ValueError(
                f"two notebooks for student {student!r}: {found[student]} and {path}; "
                "keep one notebook per student (or one per sub-folder)"
            )
        found[student] = path
    if not found:
        raise FileNotFoundError(f"no .ipynb notebook under {folder}")
    return found


def grade_folder(folder) -> list:
    """Grade every submitted notebook under ``folder`` (see :func:`submitted_notebooks`)."""
    return [
        grade
        for student, path in submitted_notebooks(folder).items()
        for grade in grade_notebook(path, student)
    ]


def write_grades(grades: list, path) -> Path:
    """Write ``grades`` as a CSV with columns student, exercise, passed, message (atomically)."""
    path = Path(path)
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow([f.name for f in fields(Grade)])
    writer.writerows(astuple(grade) for grade in grades)
    with atomic_write(path) as tmp:
        tmp.write_text(text.getvalue(), encoding="utf-8")
    return path


def grade_summary(grades: list) -> list:
    """One row per student: exercises passed out of all, and which failed."""
    students = dict.fromkeys(grade.student for grade in grades)
    rows = []
    for student in students:
        mine = [grade for grade in grades if grade.student == student]
        failed = [grade.exercise for grade in mine if not grade.passed]
        rows.append(
            {
                "student": student,
                "passed": f"{len(mine) - len(failed)} of {len(mine)}",
                "failed": ", ".join(failed) or "-",
            }
        )
    return rows
