"""Make the student version of the exercise notebooks: solutions replaced by placeholders.

The instructor notebook (book/09_exercises.ipynb) is the only one maintained by hand. Every code
cell tagged ``solution`` becomes, in the student copy, the same function signature and docstring
with its body replaced by ``raise NotImplementedError(...)``; a solution cell that defines no
function becomes a single ``raise NotImplementedError(...)``. All other cells are copied as they
are, without outputs.

Usage::

    python tools/make_student_notebooks.py                       # book/09_exercises.ipynb -> _build/students/
    python tools/make_student_notebooks.py NOTEBOOK... --out DIR
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_NOTEBOOKS = [ROOT / "book" / "09_exercises.ipynb"]
DEFAULT_OUT = ROOT / "_build" / "students"
SOLUTION_TAG = "solution"
STUDENT_NOTE = "\n\n*Student version: the solutions were removed; write your own in the cells that raise `NotImplementedError`.*\n"


def placeholder_source(source: str, exercise: int) -> str:
    """The student version of one solution cell's source (see module docstring)."""
    tree = ast.parse(source)
    lines = source.splitlines()
    functions = [node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    message = f"Exercise {exercise}: write your solution here"
    if not functions:
        return f'raise NotImplementedError("{message}")\n'
    parts = []
    for fn in functions:
        first_body = fn.body[0]
        has_docstring = (isinstance(first_body, ast.Expr) and isinstance(first_body.value, ast.Constant)
                         and isinstance(first_body.value.value, str))
        keep_until = first_body.end_lineno if has_docstring else fn.body[0].lineno - 1
        start = min([fn.lineno] + [d.lineno for d in fn.decorator_list])
        header = lines[start - 1: keep_until]
        indent = " " * (first_body.col_offset)
        parts.append("\n".join(header + [f"{indent}# your code here", f'{indent}raise NotImplementedError("{message}")']))
    return "\n\n\n".join(parts) + "\n"


def make_student_notebook(nb):
    """A copy of the notebook ``nb`` (nbformat NotebookNode) with its solution cells replaced."""
    import copy

    nb = copy.deepcopy(nb)
    exercise = 0
    n_solutions = 0
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        tags = cell.metadata.get("tags", [])
        if cell.cell_type == "code" and SOLUTION_TAG in tags:
            exercise += 1
            n_solutions += 1
            cell.source = placeholder_source(cell.source, exercise)
            cell.metadata["tags"] = [t for t in tags if t not in (SOLUTION_TAG, "hide-input")] + ["answer"]
    if n_solutions == 0:
        raise ValueError(f"the notebook has no code cell tagged '{SOLUTION_TAG}': nothing to turn into an exercise")
    if nb.cells and nb.cells[0].cell_type == "markdown":
        nb.cells[0].source = nb.cells[0].source.rstrip("\n") + STUDENT_NOTE
    return nb


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, default=DEFAULT_NOTEBOOKS,
                        help="instructor notebooks (default: book/09_exercises.ipynb)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: _build/students)")
    args = parser.parse_args(argv)

    import nbformat

    sys.path.insert(0, str(ROOT))
    from etecrm_lib.storage import atomic_write

    written = []
    for path in args.notebooks:
        if not path.is_file():
            parser.error(f"no such notebook: {path}")
        student = make_student_notebook(nbformat.read(path, as_version=4))
        nbformat.validate(student)
        target = args.out / path.name
        with atomic_write(target) as tmp:
            tmp.write_text(nbformat.writes(student) + "\n", encoding="utf-8")
        print(f"{path} -> {target}")
        written.append(target)
    return written


if __name__ == "__main__":
    main()
