"""The layering of dgmm's packages, read from the source (every import, function-local and TYPE_CHECKING ones too).

    kernels  <-  data  <-  execution           (the maths; inputs and outputs; dask and distributed)
    kernels  <-  algorithms                     (programs of passes: no maths of their own, no Dask)
    kernels, data, algorithms  <-  persist  <-  estimator  <-  cli

A package may import only the packages listed for it in ALLOWED (and ``dgmm.errors``, ``dgmm.version``);
only ``execution`` and ``data`` import dask or distributed, and nothing under ``kernels`` or
``algorithms`` imports dask, distributed or pyarrow. Imports form no cycle at any level (module-level,
function-local and TYPE_CHECKING ones alike: a cycle hidden in a function is still a knot), and no
name with a leading underscore is imported from another package.

Inside ``kernels``, ``kernels/device/`` (the array-API and CUDA twins) imports the NumPy kernels, never
the reverse, and no NumPy kernel tests the array type it was given: the pass kernels above choose once
(``dgmm.kernels.arrays``: ``on_host``, ``ByBackend``).

Above the packages sit two consumers that may import any of them: ``dgmm/__init__.py`` (the public
API) and ``dgmm/testing.py`` (helpers for tests/ and benchmarks/ only: no module of dgmm imports it,
and it imports the test extras, pytest and hypothesis, only inside functions).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "dgmm"
SHARED = {"errors", "version"}  # modules every layer may import
ALLOWED: dict[str, set[str]] = {
    "kernels": set(),
    "algorithms": {"kernels"},
    "data": {"kernels"},
    "execution": {"kernels", "data"},
    "persist": {"kernels", "data", "algorithms"},
    "estimator": {"kernels", "data", "execution", "algorithms", "persist"},
    "cli": {"kernels", "data", "execution", "algorithms", "persist", "estimator"},
}
DASK = ("dask", "distributed")
NO_IO = ("dask", "distributed", "pyarrow")  # kernels and algorithms: pure NumPy/SciPy (numba in kernels)
ONLY_TOP = {"__init__", "testing"}  # top-level consumers: the public face, and the helpers of tests and benchmarks
TEST_EXTRAS = ("pytest", "hypothesis")  # not dependencies of the package: dgmm.testing imports them lazily


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, list[str], bool]]:
    """(imported module, names imported from it, at module level?) for every import in a file."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    top_level = {id(node) for node in tree.body}
    top_level |= {id(n) for node in tree.body if isinstance(node, ast.If) for n in node.body}  # TYPE_CHECKING
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [alias.name for alias in node.names]
            if node.level and not node.module:  # from . import a, b: each may be a module
                found += [(f"{target}.{n}", [], id(node) in top_level) for n in names]
            else:
                found.append((target, names, id(node) in top_level))
    return found


SOURCES = sorted(PACKAGE.rglob("*.py"))
GRAPH = {module_name(p): imports(p) for p in SOURCES}


def layer(module: str) -> str | None:
    """The package of a dgmm module (``dgmm.kernels.estep`` -> ``kernels``), or its own name at the top."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "dgmm" else None


def test_the_packages_show_the_data_flow():
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()} == set(ALLOWED)
    top = {p.stem for p in PACKAGE.glob("*.py")}
    assert top == ONLY_TOP | SHARED, "modules belong in a package: " + ", ".join(sorted(top - ONLY_TOP - SHARED))
    assert (PACKAGE / "kernels" / "estep.py").exists() and (PACKAGE / "execution" / "passes.py").exists()


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if layer(m) in ALLOWED))
def test_each_package_imports_only_the_layers_below_it(module):
    own = layer(module)
    allowed = ALLOWED[own] | SHARED | {own}
    for target, _, _ in GRAPH[module]:
        if target == "dgmm":
            raise AssertionError(f"{module} imports the package dgmm itself (a cycle through __init__)")
        used = layer(target)
        if target.startswith("dgmm.") and used not in allowed:
            raise AssertionError(f"{module} imports {target}: {own} may use only {sorted(allowed - {own})}")
        root = target.split(".")[0]
        if own in ("kernels", "algorithms"):
            assert root not in NO_IO, f"{module} imports {target}: {own} stays pure NumPy/SciPy"
        if own not in ("execution", "data"):
            assert root not in DASK, f"{module} imports {target}: only execution/ and data/ use dask"


def test_testing_is_only_for_tests_and_benchmarks():
    importers = sorted(
        module
        for module, found in GRAPH.items()
        if module != "dgmm.testing"
        for target, names, _ in found
        if target == "dgmm.testing" or (target == "dgmm" and "testing" in names)
    )
    assert not importers, f"dgmm.testing is for tests and benchmarks only, yet imported by {importers}"
    tree = ast.parse((PACKAGE / "testing.py").read_text())  # statements run on import (not TYPE_CHECKING ones)
    eager = {
        alias.name if isinstance(node, ast.Import) else node.module or ""
        for node in tree.body
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    extras = sorted(m for m in eager if m.split(".")[0] in TEST_EXTRAS)
    assert not extras, f"dgmm.testing imports test extras at module level (import them inside functions): {extras}"


def test_no_private_name_is_imported_from_another_package():
    problems = []
    for module, found in GRAPH.items():
        for target, names, _ in found:
            if not target.startswith("dgmm") or layer(target) == layer(module):
                continue
            private = [n for n in names if n.startswith("_") and n != "__version__"]
            if private or any(part.startswith("_") for part in target.split(".")):
                problems.append(f"{module}: {target} {private}")
    assert not problems, problems


def test_imports_have_no_cycle_at_any_level():
    edges = defaultdict(set)
    for module, found in GRAPH.items():
        for target, names, _ in found:
            if not target.startswith("dgmm"):
                continue
            candidates = [f"{target}.{n}" for n in names if f"{target}.{n}" in GRAPH] or [target]
            edges[module] |= {c for c in candidates if c in GRAPH and c != module}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if nxt == "dgmm":
                continue
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(nxt) :] + [nxt]))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for module in sorted(GRAPH):
        if module not in state and module != "dgmm":
            visit(module, [module])


HOST_KERNELS = sorted(m for m in GRAPH if layer(m) == "kernels" and not m.startswith("dgmm.kernels.device"))


@pytest.mark.parametrize("module", HOST_KERNELS)
def test_numpy_kernels_never_import_their_device_twins(module):
    device = [
        target
        for target, names, _ in GRAPH[module]
        if target.startswith("dgmm.kernels.device") or (target == "dgmm.kernels" and "device" in names)
    ]
    assert not device, f"{module} imports {device}: kernels/device imports the NumPy kernels, never the reverse"


@pytest.mark.parametrize("module", [m for m in HOST_KERNELS if m != "dgmm.kernels.arrays"])
def test_numpy_kernels_never_test_the_array_type(module):
    path = PACKAGE.parent / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = path.with_suffix("") / "__init__.py"
    tests = [
        node.lineno
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", None) in ("isinstance", "on_host")
        and any(isinstance(arg, ast.Attribute) and arg.attr == "ndarray" for arg in ast.walk(node))
        or isinstance(node, ast.Call)
        and getattr(node.func, "id", None) == "on_host"
    ]
    assert not tests, (
        f"{module} tests the array type (line {tests[0]}); choose between a kernel and its "
        "device twin in the pass kernel (dgmm.kernels.arrays.on_host, ByBackend)"
    )


MAX_LINES = 450  # as ruff formats them (400 in the denser hand layout the limit was first set for)


def test_files_stay_small():
    long = {str(p.relative_to(PACKAGE)): n for p in SOURCES if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines: {long}"
