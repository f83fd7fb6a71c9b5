"""The house rules, checked on the source: no import cycles, and imports that run one way.

commands -> runs -> engine -> kernels; file formats return data and never reach the engine.
Every import counts, including those inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"numnet": ROOT / "numnet", "numnet.backends": ROOT / "backends", "numnet.gui": ROOT / "gui"}


def module_files() -> dict[str, Path]:
    modules = {}
    for package, folder in PACKAGES.items():
        for path in folder.glob("*.py"):
            modules[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return modules


MODULES = module_files()


def imports_of(name: str, path: Path) -> set[str]:
    """numnet modules `name` imports anywhere in its source."""
    package = name if path.stem == "__init__" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return {module for module in found if module in MODULES and module != name}


GRAPH = {name: imports_of(name, path) for name, path in MODULES.items()}


def reachable(start: str) -> set[str]:
    seen, stack = set(), [start]
    while stack:
        for nxt in GRAPH[stack.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def test_the_graph_sees_the_real_imports():
    assert "numnet.layers" in GRAPH["numnet.model"] and "numnet.io" in GRAPH["numnet.files"]
    assert "numnet.model" in GRAPH["numnet.backends"]  # an import inside a function counts too


def test_no_module_imports_itself_through_others():
    cycles = sorted(name for name in GRAPH if name in reachable(name))
    assert cycles == [], f"import cycles through: {cycles}"


FILE_FORMATS = ["numnet.files", "numnet.keras_files"]
ENGINE = [
    "numnet.layers",
    "numnet.layer_base",
    "numnet.augmentation",
    "numnet.schedules",
    "numnet.fusion",
    "numnet.optimizers",
    "numnet.callbacks",
    "numnet.model",
    "numnet.training",
]
BUILDERS = ["numnet.model", "numnet.training", "numnet.backends", "numnet.loading", "numnet.runs"]
COMMANDS = ["numnet.train", "numnet.experiments", "numnet.report", "numnet.web", "numnet.gui", "numnet.gui.app",
            "numnet.gui.web"]  # fmt: skip


@pytest.mark.parametrize("module", FILE_FORMATS)
def test_file_formats_return_data_and_never_build(module):
    assert reachable(module).isdisjoint(BUILDERS), sorted(reachable(module) & set(BUILDERS))


@pytest.mark.parametrize("module", ENGINE + ["numnet.backends.numpy_kernels", "numnet.backends.numba_kernels"])
def test_the_engine_never_reaches_a_command(module):
    assert reachable(module).isdisjoint(COMMANDS), sorted(reachable(module) & set(COMMANDS))


@pytest.mark.parametrize("module", ["numnet.backends.numpy_kernels", "numnet.backends.numba_kernels"])
def test_kernels_are_plain_functions_that_import_no_engine(module):
    assert reachable(module).isdisjoint(ENGINE + BUILDERS)
