"""Imports flow one way through the pipeline stages; this test parses every module and enforces it.

``networks`` sits below ``planning`` because a plan embeds the network specification and the planner
estimates memory from the very network the trainer builds (see README, "Layout").
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "src" / "autounet"
BASE = {"errors", "paths", "typing", "progress", "devices", "__init__"}

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
    "training": {"io", "dataset", "planning", "preprocessing", "data", "networks", "inference", "evaluation"},
    "inference": {"io", "dataset", "planning", "preprocessing", "networks", "postprocessing"},
    "evaluation": {"io", "dataset"},
    "postprocessing": {"io", "dataset", "evaluation"},
    "ensembling": {"io", "dataset", "postprocessing", "inference"},
    "sharing": {"io", "dataset", "planning"},
    "deploy": {"io", "dataset", "planning", "preprocessing", "networks", "data", "inference"},
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
