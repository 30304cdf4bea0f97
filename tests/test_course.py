"""The course around the book: a guide at the top of every chapter 1-9 (made from one table),
exercises for every chapter, model answers for instructors only, grading of submitted notebooks."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from etecrm_lib import course, exercises

ROOT = Path(__file__).resolve().parents[1]
INSTRUCTOR = ROOT / "book" / "10_exercises.ipynb"
STUDENT = ROOT / "students" / "10_exercises.ipynb"
EXERCISE_HEADING = re.compile(r"^## Exercise (\d+) \(chapter (\d)\): ", flags=re.MULTILINE)


def exercise_chapters() -> dict:
    """``{exercise number: chapter number}`` from the headings of the exercises notebook."""
    nb = nbformat.read(INSTRUCTOR, as_version=4)
    found = {}
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for number, chapter in EXERCISE_HEADING.findall(cell.source):
                found[int(number)] = int(chapter)
    return found


def exercise_minutes() -> dict:
    """``{exercise number: minutes}`` from each exercise's "**Time:** about N minutes"."""
    nb = nbformat.read(INSTRUCTOR, as_version=4)
    found = {}
    for cell in nb.cells:
        heading = EXERCISE_HEADING.search(cell.source) if cell.cell_type == "markdown" else None
        if heading:
            time = re.search(r"\*\*Time:\*\* about (\d+) minutes", cell.source)
            found[int(heading.group(1))] = int(time.group(1))
    return found


@pytest.mark.parametrize("chapter", sorted(course.GUIDES))
def test_every_chapter_opens_with_its_guide(chapter):
    nb = nbformat.read(ROOT / "book" / f"{chapter}.ipynb", as_version=4)
    guide = nb.cells[1]
    assert guide.get("id") == course.GUIDE_ID and guide.cell_type == "markdown", (
        f"{chapter}: no course guide right after the title; run python tools/course_guides.py"
    )
    assert guide.source == course.guide_source(chapter), (
        f"{chapter}: the guide differs from etecrm_lib.course.GUIDES; run tools/course_guides.py"
    )
    for heading in ("**Learning objectives.**", "**Prerequisites.**", "**Time.**"):
        assert heading in guide.source
    assert re.search(r"About \d+ minutes to read and run", guide.source)


def test_guides_and_exercises_agree_and_cover_every_chapter():
    chapters = exercise_chapters()
    assert sorted(chapters) == list(range(1, len(chapters) + 1)), "exercises numbered 1, 2, ..."
    assert set(chapters.values()) == set(range(1, 10)), "at least one exercise per chapter 1-9"
    for stem, guide in course.GUIDES.items():
        number = int(stem[:2])
        assert guide.exercises, f"{stem}: no exercise named"
        assert {chapters[n] for n in guide.exercises} == {number}, (
            f"{stem}: its guide names exercises {guide.exercises}, which belong to chapters "
            f"{[chapters.get(n) for n in guide.exercises]}"
        )
    minutes = exercise_minutes()
    for stem, guide in course.GUIDES.items():
        assert sum(minutes[n] for n in guide.exercises) == guide.exercise_minutes, (
            f"{stem}: the guide's exercise time differs from the exercises' own estimates"
        )
    named = sorted(n for guide in course.GUIDES.values() for n in guide.exercises)
    assert named == sorted(chapters), "every exercise is named by exactly one chapter's guide"
    assert "1 and 2" in course.guide_source("01_data")
    assert "Exercise 3 in" in course.guide_source("02_gabor_ridge")
    with pytest.raises(KeyError, match="no course guide"):
        course.guide_source("10_exercises")


def test_with_guide_cell_adds_once_moves_and_touches_nothing_else():
    import nbformat.v4 as nbf

    cells = [nbf.new_markdown_cell("# 4. T"), nbf.new_code_cell("x = 1"), nbf.new_code_cell("y")]
    nb = nbf.new_notebook(cells=cells)
    before = [c.source for c in nb.cells]
    course.with_guide_cell(nb, "04_end_to_end")
    course.with_guide_cell(nb, "04_end_to_end")  # twice: still one guide
    assert [c.get("id") for c in nb.cells].count(course.GUIDE_ID) == 1
    assert [c.source for c in nb.cells if c.get("id") != course.GUIDE_ID] == before
    assert nb.cells[1].source == course.guide_source("04_end_to_end")
    nb.cells.append(nb.cells.pop(1))  # a guide that moved to the end comes back after the title
    nb.cells[-1].source = "stale"
    course.with_guide_cell(nb, "04_end_to_end")
    assert nb.cells[1].source == course.guide_source("04_end_to_end")
    nbformat.validate(nb)


def test_course_guides_tool_finds_the_book_up_to_date():
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "course_guides.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


# --------------------------------------------------------------------------- model answers
def model_answer_lines(nb) -> list:
    """The text lines (20 characters or more) of the instructor-only cells."""
    return [
        line.strip()
        for cell in nb.cells
        if "instructor" in cell.metadata.get("tags", [])
        for line in cell.source.splitlines()
        if len(line.strip()) >= 20
    ]


def test_model_answers_are_in_the_instructor_edition_only():
    teacher = nbformat.read(INSTRUCTOR, as_version=4)
    answers = [c for c in teacher.cells if "Model answer" in c.source and c.cell_type == "markdown"]
    questions = [c for c in teacher.cells if "Then answer" in c.source]
    assert len(answers) >= len(questions) >= 9, "each discussion question needs a model answer"
    assert all("instructor" in c.metadata.get("tags", []) for c in answers)
    pupil_text = STUDENT.read_text(encoding="utf-8")
    assert "Model answer" not in pupil_text
    leaked = [line for line in model_answer_lines(teacher) if line in pupil_text]
    assert not leaked, f"instructor text in the student notebook: {leaked[:3]}"


def test_student_notebook_carries_nbgrader_metadata():
    pupil = nbformat.read(STUDENT, as_version=4)
    answers = [c for c in pupil.cells if "answer" in c.metadata.get("tags", [])]
    checks = [c for c in pupil.cells if "check" in c.metadata.get("tags", [])]
    assert len(answers) == len(checks) == len(exercise_chapters())
    for cell in answers:
        assert cell.metadata["nbgrader"]["solution"] and not cell.metadata["nbgrader"]["grade"]
    for cell in checks:
        meta = cell.metadata["nbgrader"]
        assert meta["grade"] and meta["locked"] and meta["points"] == 1
        assert "exercises.check_" in cell.source
    ids = [c.metadata["nbgrader"]["grade_id"] for c in answers + checks]
    assert len(set(ids)) == len(ids), "nbgrader needs unique grade ids"


# --------------------------------------------------------------------------- grading
def fake_submission(path: Path, right: bool) -> Path:
    """The student notebook with every answer filled in from the instructor's solutions (right), or
    with one wrong answer (pearson_r forgets to centre) and the rest left blank."""
    teacher = nbformat.read(INSTRUCTOR, as_version=4)
    pupil = nbformat.read(STUDENT, as_version=4)
    solutions = [c.source for c in teacher.cells if "solution" in c.metadata.get("tags", [])]
    answers = [c for c in pupil.cells if "answer" in c.metadata.get("tags", [])]
    assert len(solutions) == len(answers)
    if right:
        for cell, source in zip(answers, solutions):
            cell.source = source
    else:
        answers[0].source = (
            "def pearson_r(predictions, responses):\n"
            "    x, y = predictions, responses\n"
            "    return (x * y).sum(0) / np.sqrt((x * x).sum(0) * (y * y).sum(0))\n"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(pupil, path)
    return path


def test_grading_two_fake_submissions(tmp_path):
    folder = tmp_path / "submissions"
    fake_submission(folder / "ada.ipynb", right=True)
    fake_submission(folder / "bob" / "10_exercises.ipynb", right=False)
    out = tmp_path / "grades.csv"
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "grade.py"), str(folder), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    with out.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["student", "exercise", "passed", "message"]
    names = list(exercises.EXERCISES)
    by_student = {s: {r["exercise"]: r for r in rows if r["student"] == s} for s in ("ada", "bob")}
    assert len(rows) == 2 * len(names) and all(set(g) == set(names) for g in by_student.values())
    for name, row in by_student["ada"].items():
        assert row["passed"] == "True", f"ada, {name}: {row['message']}"
        assert row["message"].startswith("Correct")
    bob = by_student["bob"]
    assert bob["pearson_r"]["passed"] == "False"
    assert "value(s) are wrong" in bob["pearson_r"]["message"]
    assert all(bob[n]["passed"] == "False" for n in names)
    assert bob["noise_ceiling"]["message"] == "not answered (NotImplementedError)"
    assert f"ada: {len(names)} of {len(names)} passed" in done.stdout
    assert f"bob: 0 of {len(names)} passed" in done.stdout


def test_grading_reports_broken_cells_and_bad_folders(tmp_path):
    import nbformat.v4 as nbf

    broken = nbf.new_code_cell("def pearson_r(x, y):\n    return 1\n\n1 / 0\n")
    broken.metadata["tags"] = ["answer"]
    nbformat.write(nbf.new_notebook(cells=[broken]), tmp_path / "carl.ipynb")
    grades = {g.exercise: g for g in course.grade_folder(tmp_path)}
    assert not grades["pearson_r"].passed  # defined before the error, but wrong
    assert "ZeroDivisionError" in grades["noise_ceiling"].message
    assert "no function noise_ceiling()" in grades["noise_ceiling"].message
    (tmp_path / "carl").mkdir()
    nbformat.write(nbf.new_notebook(cells=[broken]), tmp_path / "carl" / "x.ipynb")
    with pytest.raises(ValueError, match="two notebooks for student 'carl'"):
        course.submitted_notebooks(tmp_path)
    with pytest.raises(FileNotFoundError, match="no folder"):
        course.submitted_notebooks(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no .ipynb"):
        course.submitted_notebooks(tmp_path / "empty")


def test_refresh_setup_cells_keeps_the_guide(tmp_path):
    import nbformat.v4 as nbf

    from etecrm_lib import notebooks

    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/04_end_to_end\n")
    (tmp_path / "book").mkdir()
    cells = notebooks.standard_cells("04_end_to_end.ipynb", "4. T") + [nbf.new_code_cell("x")]
    cells[1].source = "old set-up"
    nb = course.with_guide_cell(nbf.new_notebook(cells=cells), "04_end_to_end")
    nbformat.write(nb, tmp_path / "book" / "04_end_to_end.ipynb")
    assert notebooks.refresh_setup_cells(tmp_path)
    nb = nbformat.read(tmp_path / "book" / "04_end_to_end.ipynb", as_version=4)
    assert nb.cells[1].source == course.guide_source("04_end_to_end")
    assert nb.cells[2].source == notebooks.setup_cell_source("04_end_to_end.ipynb")


# --------------------------------------------------------------------------- the payoffs
@pytest.mark.slow
def test_exercise_payoffs_show_what_the_text_says(capsys):
    """The instructor notebook's own cells (all but the ETECRM training of exercise 9), run on the
    quick profile: the student-built model predicts, honest selection keeps real signal, the pull
    ratio is computed, and the learning curves cross."""
    import numpy as np

    nb = nbformat.read(INSTRUCTOR, as_version=4)
    namespace = {"DATASET": "sim", "PROFILE": "quick", "SEED": 0}
    code = [c for c in nb.cells if c.cell_type == "code"][2:]  # after set-up and parameters
    for cell in code:
        if any(s in cell.source for s in ("run_variants", "= ablation", "comparison_bars")):
            continue  # exercise 9 trains two networks: the book build runs it
        exec(compile(cell.source, "<exercise cell>", "exec"), namespace)
    fits, model = namespace["fits"], namespace["model"]
    contrast, mean = (float(np.median(fits[k]["test_r"])) for k in ("contrast", "mean"))
    assert contrast > 0.1 and contrast > mean + 0.1, (contrast, mean)
    assert namespace["picked_on_val"] > float(np.median(model["test_r"])) > 0
    assert namespace["picked_on_test"] > namespace["picked_on_val"]
    pull = namespace["pull"]
    assert pull[0] / pull[2] == pytest.approx((0.8 / 0.02) ** 2)
    assert "pulls 1,600 times harder" in capsys.readouterr().out
    assert namespace["crossing"] in namespace["sizes"]
