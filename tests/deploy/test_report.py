"""The deployment report's JSON and table, the accuracy gate, the fall-back steps' node selection, and the CPU
description parsed from /proc/cpuinfo text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from autounet.deploy import DeployError
from autounet.deploy.accuracy import AccuracyGate
from autounet.deploy.cpu import CpuInfo, default_threads, parse_cpuinfo, seconds_per_window
from autounet.deploy.report import (
    ClassDice,
    DeployReport,
    FoldReport,
    StepResult,
    format_report,
    load_report,
    save_report,
)
from autounet.deploy.steps import FALLBACK_STEPS, QuantizationStep, float_nodes
from autounet.errors import ConfigError

from .conftest import tiny_network

CPUINFO = """processor\t: 0
model name\t: Example CPU 9000
physical id\t: 0
core id\t\t: 0
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512_vnni amx_int8

processor\t: 1
model name\t: Example CPU 9000
physical id\t: 0
core id\t\t: 0
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512_vnni amx_int8

processor\t: 2
model name\t: Example CPU 9000
physical id\t: 0
core id\t\t: 1
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512_vnni amx_int8
"""


def _report() -> DeployReport:
    classes = (ClassDice("organ", 0.91, 0.905), ClassDice("tumour", 0.60, 0.58))
    attempts = (StepResult("int8", (), classes, False),
                StepResult("first-last-float", ("conv_a", "conv_b"), (ClassDice("organ", 0.91, 0.91),
                                                                     ClassDice("tumour", 0.60, 0.598)), True))
    fold = FoldReport("0", ("case_1", "case_2"), attempts, "first-last-float", 0.5, 0.2)
    cpu = CpuInfo("Example CPU 9000", ("avx2", "avx512_vnni"), 4, 2)
    return DeployReport(DeployReport.SCHEMA_VERSION, "int8", True, 0.005, 0.01, False, "splits.json", (fold,),
                        True, "openvino", 4, 2, {"openvino/b1": 0.2, "openvino/b4": 0.15}, cpu)


def test_report_round_trips_and_reads_as_a_table(tmp_path: Path) -> None:
    report = _report()
    save_report(tmp_path / "deploy_report.json", report)
    assert load_report(tmp_path / "deploy_report.json") == report
    data = json.loads((tmp_path / "deploy_report.json").read_text())
    assert data["schema_version"] == 1 and data["folds"][0]["attempts"][1]["float_nodes"] == ["conv_a", "conv_b"]
    table = format_report(report).splitlines()
    assert table[0].split() == ["fold", "step", "class", "float", "int8", "drop"]
    assert ["0", "int8", "tumour", "0.6000", "0.5800", "+2.00"] in [line.split() for line in table]
    assert any(line.startswith("0     int8") and "+1.25" in line and "+2.00" in line and "rejected" in line
               for line in table)  # mean drop (0.5 + 2.0) / 2 points, worst class 2 points
    assert any("first-last-float" in line and "accepted" in line and "2 node(s) float" in line for line in table)
    assert "runtime: openvino, batch 4, 2 thread(s)" in table
    assert table[-1] == "cpu: Example CPU 9000 (2 core(s); avx2 avx512_vnni)"


def test_report_from_a_newer_autounet_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "deploy_report.json"
    save_report(path, _report())
    data = json.loads(path.read_text())
    data["schema_version"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="upgrade autounet"):
        load_report(path)


def test_gate_limits_are_inclusive_and_both_apply() -> None:
    gate = AccuracyGate(max_mean_drop=0.005, max_class_drop=0.01)
    assert gate.holds([ClassDice("a", 0.9, 0.9), ClassDice("b", 0.9, 0.89)])  # mean 0.5, worst 1.0 points
    assert not gate.holds([ClassDice("a", 0.9, 0.899), ClassDice("b", 0.9, 0.89)])  # mean 0.55 points
    assert not gate.holds([ClassDice("a", 0.9, 0.92), ClassDice("b", 0.9, 0.885)])  # mean fine, one class 1.5
    assert gate.holds([ClassDice("a", 0.5, 0.6)])  # an improvement is no drop
    assert AccuracyGate(0.0, 0.0).holds([ClassDice("a", 0.7, 0.7)]) and AccuracyGate().holds([])


def test_cpuinfo_counts_physical_cores_of_the_allowed_cpus() -> None:
    info = parse_cpuinfo(CPUINFO)
    assert info == CpuInfo("Example CPU 9000", ("avx2", "fma", "avx512f", "avx512_vnni", "amx_int8"), 3, 2)
    assert parse_cpuinfo(CPUINFO, allowed={0, 1}).physical_cores == 1  # hyper-threading siblings: one core
    assert parse_cpuinfo(CPUINFO, allowed={1, 2}).physical_cores == 2
    assert parse_cpuinfo("", allowed={0, 1, 2, 3}).physical_cores == 4  # no cpuinfo: every allowed CPU
    assert default_threads() >= 1


def test_seconds_per_window_times_a_patch_model() -> None:
    calls: list[tuple[int, ...]] = []

    def model(patches: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(patches.shape))
        return patches

    assert seconds_per_window(model, (2, 1, 8, 8), repeats=3) >= 0
    assert calls == [(2, 1, 8, 8)] * 4  # one warm-up call, three timed


def test_steps_keep_growing_sets_of_the_intended_nodes(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    import onnx

    from autounet.deploy.onnx_export import export_onnx

    torch.manual_seed(0)
    path = export_onnx(tiny_network(2), (1, 2, 16, 16), (4, 4), tmp_path / "fp32.onnx", dynamo=False)
    ops = {node.name: node.op_type for node in onnx.load(str(path)).graph.node}
    convs = [name for name, op in ops.items() if op == "Conv"]
    chosen = [float_nodes(path, step) for step in FALLBACK_STEPS]
    assert chosen[0] == () and set(chosen[1]) == {convs[0], convs[-1]}
    assert {ops[name] for name in set(chosen[2]) - set(chosen[1])} == {"ConvTranspose"}
    assert convs[0] in chosen[3] and convs[1] not in chosen[3]  # the strided conv starts stage 2: int8
    assert all(set(a) < set(b) for a, b in zip(chosen, chosen[1:], strict=False))
    assert "InstanceNormalization" not in {ops[name] for name in chosen[-1]}
    with pytest.raises(DeployError, match="unknown selectors: magic"):
        float_nodes(path, QuantizationStep("bad", ("magic",), "unknown"))
