"""Imports flow one way through the pipeline stages, and no modules import each other in a circle; these
tests parse every module and enforce both.

``networks`` sits below ``planning`` because a plan embeds the network specification and the planner
estimates memory from the very network the trainer builds (see README, "Layout").
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "src" / "autounet"
BASE = {"errors", "paths", "typing", "progress", "devices", "registry", "__init__"}

# Stage -> the autounet stages it may import (besides BASE modules). Stages not listed may import anything
# below them only once they are added here; an unknown stage fails the test so it gets a rule.
ALLOWED: dict[str, set[str]] = {
    "io": set(),
    "dataset": {"io"},
    "fingerprint": {"io", "dataset"},
    "networks": set(),
    "planning": {"io", "dataset", "fingerprint", "networks"},
    "preprocessing": {"io", "dataset", "fingerprint", "planning"},
    "data": {"io", "dataset", "planning", "preprocessing"},
    # training -> detection: the detection objective derives boxes from the label maps and owns the detector's
    # losses (matcher, sampler, coder); detection itself never imports training. training -> postprocessing:
    # the multi-task validation thins predicted lines as prediction does.
    "training": {"io", "dataset", "planning", "preprocessing", "data", "networks", "inference", "evaluation",
                 "detection", "postprocessing"},
    # inference -> detection: boxes are predicted over the same windows and mapped back like label maps.
    "inference": {"io", "dataset", "planning", "preprocessing", "networks", "postprocessing", "detection"},
    "detection": {"io", "dataset", "planning", "networks"},
    "evaluation": {"io", "dataset", "detection"},
    "postprocessing": {"io", "dataset", "evaluation"},
    "ensembling": {"io", "dataset", "postprocessing", "inference"},
    "sharing": {"io", "dataset", "planning", "ensembling", "deploy"},
    "deploy": {"io", "dataset", "planning", "preprocessing", "networks", "data", "inference", "evaluation"},
    "cli": None,  # type: ignore[dict-item]  # the CLI is the top: it may import every stage
    "__main__": {"cli"},
}


def _stage_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE_ROOT)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def _imported_stages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    stages = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "autounet" and len(parts) > 1:
                stages.add(parts[1])
    return stages


MODULES = sorted(PACKAGE_ROOT.rglob("*.py"))


@pytest.mark.parametrize("module", MODULES, ids=lambda p: str(p.relative_to(PACKAGE_ROOT)))
def test_imports_flow_one_way(module: Path) -> None:
    stage = _stage_of(module)
    imported = _imported_stages(module) - BASE - {stage}
    if stage in BASE:
        assert imported <= {"errors"} | BASE, f"{module}: base module imports stages {imported}"
        return
    assert stage in ALLOWED, f"stage '{stage}' has no import rule in tests/test_architecture.py"
    allowed = ALLOWED[stage]
    if allowed is None:
        return
    forbidden = imported - allowed
    assert not forbidden, f"{module} ({stage}) imports {sorted(forbidden)}, which lie downstream"


def test_no_pickle_or_unsafe_torch_load() -> None:
    offenders = []
    for module in MODULES:
        text = module.read_text(encoding="utf-8")
        if "import pickle" in text or "pickle.load" in text:
            offenders.append(f"{module}: pickle")
        for line in text.splitlines():
            if "torch.load(" in line and "weights_only=True" not in line:
                offenders.append(f"{module}: {line.strip()}")
    assert not offenders, offenders


def _module_name(path: Path) -> str:
    parts = ("autounet", *path.relative_to(PACKAGE_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1]) if parts[-1] == "__init__" else ".".join(parts)


def _top_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported: top level, or inside top-level ``if``/``try`` blocks
    (``if TYPE_CHECKING:`` blocks never run and are left out)."""
    found: list[ast.Import | ast.ImportFrom] = []
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If) and not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
            pending.extend([*node.body, *node.orelse])
        elif isinstance(node, ast.Try):
            pending.extend([*node.body, *node.orelse, *node.finalbody,
                            *(stmt for handler in node.handlers for stmt in handler.body)])
    return found


def _import_graph() -> dict[str, set[str]]:
    """Module -> the autounet modules its module-level imports name (``from autounet.x import y`` counts as
    ``autounet.x.y`` when that is a module, else ``autounet.x``)."""
    modules = {_module_name(path): path for path in MODULES}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for node in _top_level_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif node.level == 0 and node.module:
                targets = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                           for alias in node.names]
            else:
                continue
            edges.update(target for target in targets if target in modules and target != name)
        graph[name] = edges
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (as the modules along it, first repeated at the end), or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                return [*path[path.index(target):], target]
            if target not in state and (cycle := visit(target)) is not None:
                return cycle
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)) is not None:
            return cycle
    return None


def test_no_import_circle_between_modules() -> None:
    cycle = _find_cycle(_import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or ())


def test_circle_finder_finds_circles() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
