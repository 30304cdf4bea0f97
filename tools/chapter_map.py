"""Which chapter calls which library function: read the chapters' code cells, write the map into
ARCHITECTURE.md.

For every chapter listed in ``_toc.yml`` this parses the code cells (Python's ``ast``, nothing is
run) and collects the library names they use: ``from etecrm_lib.X import f`` gives ``X.f``;
``from etecrm_lib import X`` then ``X.f(...)`` gives ``X.f``; ``import etecrm_lib.book`` then
``etecrm_lib.book.f`` gives ``book.f``. The table goes between the two marker lines of
ARCHITECTURE.md.

    python tools/chapter_map.py            # rewrite the map in ARCHITECTURE.md
    python tools/chapter_map.py --check    # exit 1 if the map is out of date (test_architecture)
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from etecrm_lib.notebooks import toc_chapters  # noqa: E402  (the repository's library, also when run as a script)

ARCHITECTURE = ROOT / "ARCHITECTURE.md"
START = "<!-- chapter map: made by tools/chapter_map.py, do not edit by hand -->"
END = "<!-- end of chapter map -->"
PACKAGE = "etecrm_lib"


def library_names(source: str) -> set:
    """``{"module.name", ...}``: the library names one piece of chapter code uses."""
    tree = ast.parse(source)
    modules = {}  # local name -> library module path (without "etecrm_lib.")
    used = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.split(".")[0] == PACKAGE
        ):
            inner = node.module[len(PACKAGE) + 1 :]
            for alias in node.names:
                if inner:  # from etecrm_lib.X import f
                    used.add(f"{inner}.{alias.name}")
                else:  # from etecrm_lib import X
                    modules[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    modules[alias.asname or alias.name] = alias.name[len(PACKAGE) + 1 :]
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            dotted = _dotted(node)
            if dotted is None:
                continue
            for local, module in modules.items():
                if dotted.startswith(local + ".") and module:
                    rest = dotted[len(local) + 1 :].split(".")[0]
                    used.add(f"{module}.{rest}")
    return {name for name in used if not name.split(".")[-1].startswith("_")}


def _dotted(node) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(parts)])


def chapter_names(path: Path) -> set:
    """The library names the code cells of one notebook use."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    return library_names(code)


def chapter_map(root: Path = ROOT) -> str:
    """The Markdown table: one row per chapter, the library names it calls grouped by module."""
    rows = ["| chapter | library functions it calls |", "| --- | --- |"]
    for chapter in toc_chapters(root):
        if not chapter.endswith(".ipynb"):
            continue
        by_module = {}
        for name in sorted(chapter_names(root / chapter)):
            module, _, function = name.rpartition(".")
            by_module.setdefault(module, []).append(function)
        cell = "; ".join(
            f"`{module}`: {', '.join(functions)}" for module, functions in sorted(by_module.items())
        )
        rows.append(f"| `{Path(chapter).stem}` | {cell} |")
    return "\n".join(rows)


def updated(text: str, table: str) -> str:
    """``text`` (ARCHITECTURE.md) with the map between the markers replaced by ``table``."""
    if START not in text or END not in text:
        raise ValueError(f"ARCHITECTURE.md needs the two marker lines {START!r} and {END!r}")
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1]
    return f"{before}{START}\n{table}\n{END}{after}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if ARCHITECTURE.md is out of date"
    )
    args = parser.parse_args()
    text = ARCHITECTURE.read_text(encoding="utf-8")
    new = updated(text, chapter_map())
    if args.check:
        if new != text:
            print(
                "ARCHITECTURE.md's chapter map is out of date: run python tools/chapter_map.py",
                file=sys.stderr,
            )
            return 1
        return 0
    if new != text:
        ARCHITECTURE.write_text(new, encoding="utf-8")
        print(f"updated the chapter map in {ARCHITECTURE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
