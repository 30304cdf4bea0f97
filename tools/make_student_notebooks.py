"""Make the student edition: exercise notebooks without solutions, and the student book around them.

The instructor notebooks (``book/10_exercises.ipynb``) are the only ones maintained by hand. In the
student copy:

- every code cell tagged ``solution`` keeps its function signatures and docstrings, with each body
  replaced by ``raise NotImplementedError(...)``; a solution cell that defines no function becomes a
  single ``raise NotImplementedError(...)``;
- cells tagged ``instructor`` (notes for teachers, model answers to the discussion questions) are
  left out;
- answer cells and check cells (tagged ``check``) carry nbgrader metadata (``solution`` and a
  one-point ``grade``), so the student notebook can also go through nbgrader;
- the title's Colab badge opens the student notebook (``students/<name>``), not the instructor's;
- all other cells are copied as they are, without outputs.

The student folder (default ``students/``, committed) also gets the student book's ``_config.yml``,
``_toc.yml`` and ``intro.md``; ``--html DIR`` builds that book (not executed: the exercises are
blank) into ``DIR/_build/html``. ``make students`` does both; ``--check`` only says whether the
committed student notebooks are up to date.

Usage::

    python tools/make_student_notebooks.py                   # book/10_exercises.ipynb -> students/
    python tools/make_student_notebooks.py --html _build/students   # ... and build the student book
    python tools/make_student_notebooks.py --check              # exit 1 if students/ is out of date
"""

from __future__ import annotations

import argparse
import ast
import copy
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INSTRUCTOR_NOTEBOOKS = [ROOT / "book" / "10_exercises.ipynb"]
DEFAULT_OUT = ROOT / "students"
SOLUTION_TAG = "solution"
INSTRUCTOR_TAG = "instructor"
CHECK_TAG = "check"
STUDENT_NOTE = (
    "\n\n*Student edition: the solutions were removed. Write your own in the cells that raise "
    "`NotImplementedError`, then run the check below each one.*\n"
)

sys.path.insert(0, str(ROOT))
from etecrm_lib import book  # noqa: E402  (the repository's library, also when run as a script)
from etecrm_lib.notebooks import book_repository, colab_url  # noqa: E402


def placeholder_source(source: str, exercise: int) -> str:
    """The student version of one solution cell's source (see module docstring)."""
    tree = ast.parse(source)
    lines = source.splitlines()
    functions = [
        node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    ]
    message = f"Exercise {exercise}: write your solution here"
    if not functions:
        return f'raise NotImplementedError("{message}")\n'
    parts = []
    for fn in functions:
        first_body = fn.body[0]
        has_docstring = (
            isinstance(first_body, ast.Expr)
            and isinstance(first_body.value, ast.Constant)
            and isinstance(first_body.value.value, str)
        )
        keep_until = first_body.end_lineno if has_docstring else fn.body[0].lineno - 1
        start = min([fn.lineno] + [d.lineno for d in fn.decorator_list])
        header = lines[start - 1 : keep_until]
        indent = " " * (first_body.col_offset)
        parts.append(
            "\n".join(
                header
                + [f"{indent}# your code here", f'{indent}raise NotImplementedError("{message}")']
            )
        )
    return "\n\n\n".join(parts) + "\n"


def nbgrader_metadata(kind: str, grade_id: str) -> dict:
    """nbgrader's cell metadata (schema 3) for an "answer" cell or a one-point "check" cell."""
    return {
        "grade": kind == "check",
        "grade_id": grade_id,
        "locked": kind == "check",
        "schema_version": 3,
        "solution": kind == "answer",
        "task": False,
        **({"points": 1} if kind == "check" else {}),
    }


def make_student_notebook(nb, name: str | None = None):
    """A copy of the notebook ``nb`` (nbformat NotebookNode) with its solution cells replaced.

    ``name`` (e.g. "10_exercises.ipynb") points the title's Colab badge at the student notebook.
    """
    nb = copy.deepcopy(nb)
    nb.cells = [c for c in nb.cells if INSTRUCTOR_TAG not in c.metadata.get("tags", [])]
    exercise = 0
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        tags = cell.metadata.get("tags", [])
        if cell.cell_type == "code" and SOLUTION_TAG in tags:
            exercise += 1
            cell.source = placeholder_source(cell.source, exercise)
            cell.metadata["tags"] = [t for t in tags if t not in (SOLUTION_TAG, "hide-input")] + [
                "answer"
            ]
            cell.metadata["nbgrader"] = nbgrader_metadata("answer", f"answer-{exercise}")
        elif cell.cell_type == "code" and CHECK_TAG in tags:
            cell.metadata["nbgrader"] = nbgrader_metadata("check", f"check-{exercise}")
    if exercise == 0:
        raise ValueError(
            f"the notebook has no code cell tagged '{SOLUTION_TAG}': nothing to turn into "
            "an exercise"
        )
    if nb.cells and nb.cells[0].cell_type == "markdown":
        title = nb.cells[0].source
        if name is not None:
            title = title.replace(colab_url(name), colab_url(name, folder=book.STUDENTS_FOLDER))
        nb.cells[0].source = title.rstrip("\n") + STUDENT_NOTE
    return nb


def student_book_files(out: Path, notebooks: list) -> dict:
    """The student book's ``_config.yml``, ``_toc.yml`` and ``intro.md`` (file name -> text) for
    folder ``out``."""
    vendor = os.path.relpath(ROOT / "book" / "vendor", out.resolve())
    extension = os.path.relpath(ROOT / "book" / "_ext", out.resolve())  # book/_ext/etecrm_build.py
    chapters = "\n".join(f"  - file: {Path(n).stem}" for n in notebooks)
    url, ref = book_repository()
    config = f"""\
# The student edition of the exercises (generated by tools/make_student_notebooks.py: do not edit).
# Build: make students (-> _build/students/_build/html). The notebooks are not executed: their
# exercises are blank.
title: "End-to-end visual encoding of fMRI: exercises (student edition)"
author: The etecrm authors
copyright: "2026"
only_build_toc_files: true
execute:
  execute_notebooks: "off"
parse:
  myst_enable_extensions: [dollarmath, amsmath, colon_fence, deflist]
html:
  favicon: {vendor}/../favicon.svg
  use_repository_button: true
  home_page_in_navbar: true
repository:
  url: {url}
  path_to_book: {book.STUDENTS_FOLDER}
  branch: {ref}
launch_buttons:
  notebook_interface: classic
  colab_url: {book.COLAB_URL}
sphinx:
  extra_extensions: [sphinx_exercise]
  local_extensions:
    etecrm_build: {extension}
  config:
    html_static_path: ["{vendor}"]
    html_css_files: ["etecrm.css"]
    mathjax_path: mathjax-3.2.2/es5/tex-mml-chtml.js
    html_context:
      default_mode: light
"""
    toc = (
        "# Generated by tools/make_student_notebooks.py.\nformat: jb-book\nroot: "
        f"intro\nchapters:\n{chapters}\n"
    )
    links = "\n".join(
        f"- [{Path(n).stem}]({Path(n).stem}.ipynb): open it in Colab with "
        f"[this link]({colab_url(Path(n).name, folder=book.STUDENTS_FOLDER)})."
        for n in notebooks
    )
    intro = f"""\
# Exercises: student edition

These are the course exercises of the book *End-to-end visual encoding of fMRI: ETECRM, taught and
reproduced*, without their solutions. Each exercise says what you will learn, about how long it
takes, and gives its hints up front; each ends with an automatic check that runs your function on
fresh random inputs and says what is wrong, if anything.

{links}

Work in the notebook (Colab, or a local Jupyter with the book's library installed): the pages here
show the exercises, not their answers. The chapters that teach the ideas are in the main book.
"""
    return {"_config.yml": config, "_toc.yml": toc, "intro.md": intro}


def write_text(path: Path, text: str) -> None:
    from etecrm_lib.storage import atomic_write

    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def student_texts(notebooks: list, out: Path) -> dict:
    """Every file of the student folder ``out``: path -> text."""
    import nbformat

    files = {}
    for path in notebooks:
        student = make_student_notebook(nbformat.read(path, as_version=4), name=path.name)
        nbformat.validate(student)
        files[out / path.name] = nbformat.writes(student) + "\n"
    for name, text in student_book_files(out, notebooks).items():
        files[out / name] = text
    return files


def build_book(folder: Path, html: Path) -> Path:
    """Build the student book in ``folder`` into ``html/_build/html``; returns that folder."""
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    command = [
        str(jupyter_book),
        "build",
        str(folder),
        "-W",
        "-n",
        "--keep-going",
        "--path-output",
        str(html),
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"the student book did not build:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return html / "_build" / "html"


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "notebooks",
        nargs="*",
        type=Path,
        default=INSTRUCTOR_NOTEBOOKS,
        help="instructor notebooks (default: book/10_exercises.ipynb)",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="student folder (default: students/)"
    )
    parser.add_argument(
        "--html", type=Path, default=None, help="also build the student book into DIR/_build/html"
    )
    parser.add_argument(
        "--book", action="store_true", help="(kept for compatibility; --html builds the book)"
    )
    parser.add_argument(
        "--check", action="store_true", help="only check that the student folder is up to date"
    )
    args = parser.parse_args(argv)

    for path in args.notebooks:
        if not path.is_file():
            parser.error(f"no such notebook: {path}")
    files = student_texts(args.notebooks, args.out)
    if args.check:
        stale = [
            str(p)
            for p, text in files.items()
            if not p.is_file() or p.read_text(encoding="utf-8") != text
        ]
        if stale:
            sys.exit(f"out of date (run `make students`): {stale}")
        print(f"{args.out} is up to date")
        return list(files)
    for path, text in files.items():
        write_text(path, text)
        print(f"wrote {path}")
    if args.html is not None:
        print(f"student book: {build_book(args.out, args.html)}")
    return list(files)


if __name__ == "__main__":
    main()
