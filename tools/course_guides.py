"""Write (or update) the course-guide cell of every chapter 1-9, right after its title.

The guides come from one table, ``etecrm_lib.course.GUIDES`` (learning objectives, prerequisites,
time, exercises). Only the guide cell changes; every other cell of a chapter is left as it is.

Usage::

    python tools/course_guides.py           # write the guide cells
    python tools/course_guides.py --check   # exit 1 if a chapter's guide is missing or out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from etecrm_lib import course  # noqa: E402  (the repository's library, also when run as a script)
from etecrm_lib.storage import atomic_write  # noqa: E402


def main(argv=None) -> list:
    import nbformat

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check, write nothing")
    args = parser.parse_args(argv)
    stale = []
    for chapter in course.GUIDES:
        path = ROOT / "book" / f"{chapter}.ipynb"
        before = path.read_text(encoding="utf-8")
        nb = course.with_guide_cell(nbformat.reads(before, as_version=4), chapter)
        after = nbformat.writes(nb) + "\n"
        if after == before:
            continue
        stale.append(str(path.relative_to(ROOT)))
        if not args.check:
            with atomic_write(path) as tmp:
                tmp.write_text(after, encoding="utf-8")
            print(f"wrote the guide cell of {path.relative_to(ROOT)}")
    if args.check and stale:
        sys.exit(f"course guides missing or out of date (run tools/course_guides.py): {stale}")
    return stale


if __name__ == "__main__":
    main()
