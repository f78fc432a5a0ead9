from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from autounet.deploy import MissingDependencyError


def _hide(monkeypatch: pytest.MonkeyPatch, package: str) -> None:
    """Make ``import package`` fail as if it were not installed (``None`` in ``sys.modules`` halts an import)."""
    for name in [n for n in sys.modules if n.startswith(package + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, package, None)


def test_importing_the_stage_needs_no_optional_package(monkeypatch: pytest.MonkeyPatch) -> None:
    for package in ("onnx", "onnxruntime", "onnxscript"):
        _hide(monkeypatch, package)
    for name in [n for n in sys.modules if n.startswith("autounet.deploy")]:
        monkeypatch.delitem(sys.modules, name)
    try:
        for module in ("autounet.deploy", "autounet.deploy.onnx_export", "autounet.deploy.runtime",
                       "autounet.deploy.calibration", "autounet.deploy.quantize"):
            importlib.import_module(module)
    finally:
        # drop the fresh copies, so later tests see the error classes their own imports bound
        for name in [n for n in sys.modules if n.startswith("autounet.deploy")]:
            del sys.modules[name]


@pytest.mark.parametrize("package", ["onnxruntime", "onnx"])
def test_using_it_without_the_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                           package: str) -> None:
    from autounet.deploy.onnx_export import export_onnx
    from autounet.deploy.runtime import OrtPatchModel
    from autounet.networks.spec import UNetSpec
    from autounet.networks.unet import build_network

    _hide(monkeypatch, package)
    with pytest.raises(MissingDependencyError) as caught:
        if package == "onnxruntime":
            OrtPatchModel(tmp_path / "net.onnx", 1, 2, 2)
        else:
            spec = UNetSpec(2, "plain", (2, 4), ((3, 3),) * 2, ((1, 1), (2, 2)), (1, 1), (1,))
            export_onnx(build_network(spec, 1, 2, deep_supervision=False), (1, 1, 4, 4), (2, 2), tmp_path / "n.onnx")
    message = str(caught.value)
    assert "\n" not in message and f"'{package}'" in message and "pip install 'autounet[deploy]'" in message
