"""The house rules, checked on the source: no import cycles, and imports that run one way between
the folders that show the architecture (ARCHITECTURE in CONTRIBUTING.md):

commands -> runs -> backends -> engine -> layers -> kernels; keras, formats and data beside them,
never reaching the engine; plain helpers below everything. Every import counts, including those
inside functions.
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
        for path in folder.rglob("*.py"):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
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
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return {module for module in found if module in MODULES and module != name}


GRAPH = {name: imports_of(name, path) for name, path in MODULES.items()}

COMMANDS = {"numnet.train", "numnet.experiments", "numnet.report", "numnet.export", "numnet.web", "numnet.gui.app",
            "numnet.gui.web", "numnet.gui.__main__"}  # fmt: skip
HELPERS = {"numnet.errors", "numnet.io", "numnet.specs", "numnet.schedules", "numnet.settings", "numnet.machine",
           "numnet.threads", "numnet.callbacks"}  # fmt: skip
KERNELS = {"numnet.backends.interface", "numnet.backends.numpy_kernels", "numnet.backends.numba_kernels",
           "numnet.backends.cuda_kernels"}  # fmt: skip
BACKENDS = {"numnet.backends", "numnet.backends.keras_backend"}  # which engine builds a spec: numnet's or Keras'


def group(module: str) -> str:
    """Which part of the architecture a module belongs to: its folder, or one of the named sets."""
    for name, members in (("command", COMMANDS), ("helper", HELPERS), ("kernels", KERNELS), ("backends", BACKENDS)):
        if module in members:
            return name
    if module == "numnet":
        return "api"  # numnet.build / numnet.load
    if module.startswith("numnet.gui"):
        return "gui"
    return module.split(".")[1]  # runs, engine, layers, keras, formats, data


# What each part may import (besides itself and the helpers): everything else is a rule broken.
ALLOWED = {
    "command": {"command", "api", "runs", "backends", "formats", "data", "layers", "keras", "kernels", "gui", "plot"},
    "gui": {"api", "backends", "data", "formats"},
    "notebook": {"api", "gui", "plot", "formats", "data"},  # numnet.notebook: the pad and figures in a notebook
    "plot": {"layers", "kernels", "data"},  # the augmentation figure runs layers on the reference kernels
    "api": {"backends", "formats", "keras", "data"},
    "runs": {"api", "backends", "formats", "data"},
    "backends": {"engine", "keras", "layers"},
    "engine": {"layers", "formats"},  # formats only to save: they never import the engine back
    "layers": {"kernels"},
    "keras": {"layers"},
    "formats": {"keras", "layers"},
    "data": set(),
    "kernels": set(),
    "helper": set(),
}


def test_every_module_belongs_to_a_known_part():
    assert {group(module) for module in MODULES} <= set(ALLOWED), sorted({group(m) for m in MODULES} - set(ALLOWED))


def test_the_graph_sees_the_real_imports():
    assert "numnet.layers" in GRAPH["numnet.engine.model"] and "numnet.io" in GRAPH["numnet.formats.npz"]
    assert "numnet.engine.model" in GRAPH["numnet.backends"]  # an import inside a function counts too
    assert group("numnet.formats.npz") == "formats" and group("numnet.runs.local") == "runs"


def reachable(start: str) -> set[str]:
    seen, stack = set(), [start]
    while stack:
        for nxt in GRAPH[stack.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def test_no_module_imports_itself_through_others():
    cycles = sorted(name for name in GRAPH if name in reachable(name))
    assert cycles == [], f"import cycles through: {cycles}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_run_one_way(module):
    own = group(module)
    broken = sorted(f"{target} ({group(target)})" for target in GRAPH[module]
                    if group(target) not in ALLOWED[own] | {own, "helper"})  # fmt: skip
    assert broken == [], f"{module} ({own}) imports {broken}"


def test_nothing_but_a_command_imports_a_command():
    for module, targets in GRAPH.items():
        if group(module) != "command":
            assert not {t for t in targets if group(t) == "command"}, module


@pytest.mark.parametrize("part", ["formats", "data", "keras", "layers", "kernels"])
def test_file_formats_data_and_layers_never_reach_the_engine(part):
    for module in (m for m in MODULES if group(m) == part):
        reached = {group(m) for m in reachable(module)}
        assert reached.isdisjoint({"engine", "backends", "runs", "command"}), (module, reached)
