"""Grade a folder of submitted exercise notebooks: one CSV row per student and exercise.

Each notebook's answer cells (tagged "answer" in the student edition) are run, then every check of
``etecrm_lib.exercises`` (the same checks as in the notebook); nothing is trained, so a class grades
in seconds. The students' code runs in this process: grade in a container or a throw-away account.

Usage::

    python tools/grade.py submissions/ --out grades.csv

``submissions/alice.ipynb`` is graded as student "alice", and so is
``submissions/alice/<any>.ipynb``.
The CSV has the columns student, exercise, passed, message; a summary per student is printed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from etecrm_lib import course  # noqa: E402  (the repository's library, also when run as a script)


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("submissions", type=Path, help="folder of submitted notebooks")
    parser.add_argument("--out", type=Path, default=Path("grades.csv"), help="the CSV to write")
    args = parser.parse_args(argv)
    try:
        grades = course.grade_folder(args.submissions)
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))
    path = course.write_grades(grades, args.out)
    for row in course.grade_summary(grades):
        print(f"{row['student']}: {row['passed']} passed; failed: {row['failed']}")
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
