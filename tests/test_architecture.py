"""The house plan (ARCHITECTURE.md) holds: no private names across modules, no import cycle, small
modules and functions, library imports at the top, one Pearson r, and a chapter map that is up to
date."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "etecrm_lib"
# Sizes count statements (the lines where a statement starts), not physical lines: `ruff format`
# may lay one call over several lines, and a size cap must be met by moving code to its room,
# not by widening or narrowing lines. About 0.6 statements per line of formatted code.
MAX_MODULE_STATEMENTS = 280
MAX_FUNCTION_STATEMENTS = 65  # the docstring not counted


def statement_lines(node):
    """The set of line numbers on which a statement inside `node` starts."""
    return {child.lineno for child in ast.walk(node) if isinstance(child, ast.stmt)}


def python_files(*folders) -> list:
    return sorted(
        p for folder in folders for p in (ROOT / folder).rglob("*.py") if ".venv" not in p.parts
    )


def library_modules() -> dict:
    """``{"etecrm_lib.x.y": path}`` of every library module."""
    out = {}
    for path in LIBRARY.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imported_modules(name: str, path: Path, node: ast.ImportFrom) -> list:
    """The library modules an ``from ... import ...`` statement of module ``name`` reads from."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    if node.level:
        base = ".".join(
            package[: len(package) - node.level + 1] + ([node.module] if node.module else [])
        )
    else:
        base = node.module or ""
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


def import_graph() -> dict:
    """``{module: set of library modules it imports at its top}``."""
    modules, graph = library_modules(), {}
    for name, path in modules.items():
        graph[name] = set()
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ImportFrom):
                graph[name].update(
                    m for m in imported_modules(name, path, node) if m in modules and m != name
                )
    return graph


def imported_closure(graph: dict, name: str) -> set:
    """Every library module ``name`` imports, directly or through others."""
    seen, todo = set(), [name]
    while todo:
        for dep in graph[todo.pop()] - seen:
            seen.add(dep)
            todo.append(dep)
    return seen


MODEL_MODULES = {
    "etecrm_lib.models",
    "etecrm_lib.training",
    "etecrm_lib.two_step",
    "etecrm_lib.ablations",
    "etecrm_lib.losses",
    "etecrm_lib.regression",
    "etecrm_lib.checkpoints",
    "etecrm_lib.gpu",
    "etecrm_lib.features",
}
RESULTS_FORMAT = ("results", "comparisons", "tables", "figures", "seed_statistics", "plots")


def test_the_results_format_imports_no_model_code():
    """Reading, comparing and tabulating results must not import the models (ARCHITECTURE.md)."""
    graph = import_graph()
    for name in RESULTS_FORMAT:
        models = {
            m
            for m in imported_closure(graph, f"etecrm_lib.{name}")
            if m in MODEL_MODULES or m.startswith("etecrm_lib.features.")
        }
        assert not models, f"etecrm_lib.{name} imports model code: {sorted(models)}"
    # and at run time (importing a package runs its __init__, which may import more)
    code = "import sys\n" + "".join(f"import etecrm_lib.{name}\n" for name in RESULTS_FORMAT)
    code += "print(' '.join(sorted(m for m in sys.modules if m.startswith('etecrm_lib.'))))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(done.stdout.split())
    assert not loaded & MODEL_MODULES and not any(m.startswith("etecrm_lib.data") for m in loaded)


def test_only_the_command_line_imports_reproduce():
    graph = import_graph()
    importers = sorted(n for n, deps in graph.items() if "etecrm_lib.reproduce" in deps)
    assert importers == ["etecrm_lib.cli"], importers


def test_the_display_orders_follow_the_registries():
    from etecrm_lib import ablations, results
    from etecrm_lib.data import DEFAULT_ROIS

    assert list(results.DISPLAY_ORDER) == list(ablations.DEFAULT_VARIANTS)
    assert results.ROI_ORDER == tuple(DEFAULT_ROIS)


def test_no_module_uses_another_modules_private_name():
    """``from x import _y`` and ``x._y`` across modules: make the name public or use the public
    API."""
    offences = []
    for path in python_files("etecrm_lib", "tests", "tools", "benchmarks", "book/_ext"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        modules = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        offences.append(
                            f"{path.relative_to(ROOT)}:{node.lineno} imports {alias.name}"
                        )
                    modules.add(alias.asname or alias.name)
            elif isinstance(node, ast.Import):
                modules.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name)
                and node.value.id in modules
            ):
                offences.append(
                    f"{path.relative_to(ROOT)}:{node.lineno} uses {node.value.id}.{node.attr}"
                )
    assert not offences, "\n".join(offences)


def test_the_import_graph_has_no_cycle_and_library_imports_sit_at_the_top():
    modules = library_modules()
    graph, inner = {}, []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        graph[name] = set()
        for node in tree.body:
            if isinstance(node, ast.ImportFrom):
                graph[name].update(
                    m for m in imported_modules(name, path, node) if m in modules and m != name
                )
        for function in ast.walk(tree):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(function):
                    if isinstance(node, ast.ImportFrom) and (
                        node.level or (node.module or "").startswith("etecrm_lib")
                    ):
                        inner.append(
                            f"{path.relative_to(ROOT)}:{node.lineno} imports {node.module} "
                            f"inside {function.name}"
                        )
    assert not inner, "library modules import each other at the top:\n" + "\n".join(inner)
    done, active = set(), []

    def visit(name):
        if name in active:
            raise AssertionError(
                "import cycle: " + " -> ".join(active[active.index(name) :] + [name])
            )
        if name in done:
            return
        active.append(name)
        for dep in graph[name]:
            if dep != "etecrm_lib":  # the package itself only holds __version__
                visit(dep)
        active.pop()
        done.add(name)

    for name in graph:
        visit(name)


def test_modules_and_functions_are_small():
    long_modules, long_functions = [], []
    for path in sorted(LIBRARY.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        n_module = len(statement_lines(tree))
        if n_module > MAX_MODULE_STATEMENTS:
            long_modules.append(
                f"{path.relative_to(ROOT)}: {n_module} statements (limit {MAX_MODULE_STATEMENTS})"
            )
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n_function = len(statement_lines(node)) - 1  # the def itself
                if ast.get_docstring(node) is not None:
                    n_function -= 1
                if n_function > MAX_FUNCTION_STATEMENTS:
                    long_functions.append(
                        f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: "
                        f"{n_function} statements (limit {MAX_FUNCTION_STATEMENTS})"
                    )
    assert not long_modules and not long_functions, "\n".join(long_modules + long_functions)


def test_pearson_r_is_defined_once():
    """Only ``evaluation.correlation`` computes r from standardized columns; the loss has its
    differentiable ``batch_pearson_r`` and the exercises their independent answer key. No other
    module divides a covariance by a product of standard deviations."""
    allowed = {"evaluation.py", "losses.py", "exercises.py"}
    offenders = []
    for path in LIBRARY.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if path.name not in allowed and (
            "def pearson" in text or "corrcoef" in text or "_bootstrap_r" in text
        ):
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, offenders


def test_the_chapter_map_in_architecture_md_is_up_to_date():
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "chapter_map.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


def test_the_chapter_map_reads_every_import_style():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import chapter_map
    finally:
        sys.path.remove(str(ROOT / "tools"))
    code = (
        "import etecrm_lib.book\nfrom etecrm_lib import plots as p\nfrom "
        "etecrm_lib.training import ETECRMModel\n"
        "PROFILE = etecrm_lib.book.default_profile()\nfig = p.roi_bars(results)\np._go()\n"
    )
    assert chapter_map.library_names(code) == {
        "book.default_profile",
        "plots.roi_bars",
        "training.ETECRMModel",
    }
    with pytest.raises(ValueError, match="marker"):
        chapter_map.updated("no markers here", "| table |")


def test_every_for_profile_has_one_signature():
    """``for_profile(cls, profile=DEFAULT_PROFILE, **changes)`` on every configuration."""
    offences = []
    for path in sorted(LIBRARY.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and node.name == "for_profile":
                args = node.args
                names = [a.arg for a in args.args] + [a.arg for a in args.kwonlyargs]
                if names != ["cls", "profile"] or not args.kwarg or args.kwarg.arg != "changes":
                    offences.append(f"{path.relative_to(ROOT)}:{node.lineno} {names}")
    assert not offences, offences
