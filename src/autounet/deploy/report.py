"""The deployment report (``deploy_report.json``): accuracy of the deployed graphs against the float model, the
fall-back steps tried, latency and the CPU it was measured on.

Dice values are fractions (0..1) in the file; the printed table shows drops in Dice points (x100), the unit
the tolerances are stated in. A positive drop means the deployed graph is worse than the float model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from autounet.deploy.cpu import CpuInfo
from autounet.io.serialization import load_dataclass, save_dataclass

__all__ = ["REPORT_FILE", "ClassDice", "DeployReport", "FoldReport", "StepResult", "format_report",
           "load_report", "save_report"]

REPORT_FILE = "deploy_report.json"


@dataclass(frozen=True)
class ClassDice:
    """Mean Dice of one class over a fold's validation cases.

    Attributes:
        name: The class (or region) name from ``dataset.json``.
        float_dice: With the float (torch) network.
        deployed_dice: With the deployed graph.
    """

    name: str
    float_dice: float
    deployed_dice: float

    @property
    def drop(self) -> float:
        """``float_dice - deployed_dice`` (positive: the deployed graph is worse)."""
        return self.float_dice - self.deployed_dice


@dataclass(frozen=True)
class StepResult:
    """One fall-back step tried on one fold.

    Attributes:
        step: The step's name (:data:`autounet.deploy.steps.FALLBACK_STEPS`).
        float_nodes: Graph nodes kept in float by the step (normalisation layers are float at every step and
            not listed).
        classes: Dice per class; empty when the accuracy was not checked.
        passed: Whether the gate held (``True`` when not checked).
    """

    step: str
    float_nodes: tuple[str, ...]
    classes: tuple[ClassDice, ...]
    passed: bool

    @property
    def mean_drop(self) -> float:
        """Mean drop over classes (0 without classes)."""
        return sum(c.drop for c in self.classes) / len(self.classes) if self.classes else 0.0

    @property
    def max_class_drop(self) -> float:
        """The largest drop of any class (0 without classes)."""
        return max((c.drop for c in self.classes), default=0.0)


@dataclass(frozen=True)
class FoldReport:
    """The check of one fold.

    Attributes:
        fold: Fold name.
        cases: The validation cases predicted (empty: not checked).
        attempts: The steps tried, in order; the last one passed unless the deployment was refused.
        accepted: The accepted step's name; empty when none held.
        float_seconds_per_window: Torch float32 network, one window of the configuration's patch size.
        deployed_seconds_per_window: The accepted graph on its runtime (of the last attempt when refused).
    """

    fold: str
    cases: tuple[str, ...]
    attempts: tuple[StepResult, ...]
    accepted: str
    float_seconds_per_window: float
    deployed_seconds_per_window: float


@dataclass(frozen=True)
class DeployReport:
    """``deploy_report.json``.

    Attributes:
        schema_version: Version of this file layout.
        precision: ``fp32`` or ``int8``.
        checked: Whether Dice was compared (``--no-accuracy-check`` or no labelled data: ``False``).
        max_mean_drop: The gate's limit on the mean drop over classes (Dice fraction).
        max_class_drop: The gate's limit on any class's drop.
        mirroring: Whether the check predicted with mirroring (test-time augmentation).
        split: Where the validation cases came from.
        folds: One entry per fold checked.
        accepted: Whether every fold passed (else the deployment was refused).
        backend: The runtime measured fastest for the deployed graphs (``predict --backend auto`` uses it).
        batch_size: Windows per runtime call measured fastest with that runtime.
        threads: Runtime threads used for the measurements.
        seconds_per_window: Measured seconds per window by ``<runtime>/b<batch size>``.
        cpu: The CPU it was measured on.
    """

    SCHEMA_VERSION: ClassVar[int] = 1

    schema_version: int
    precision: str
    checked: bool
    max_mean_drop: float
    max_class_drop: float
    mirroring: bool
    split: str
    folds: tuple[FoldReport, ...]
    accepted: bool
    backend: str = ""
    batch_size: int = 0
    threads: int = 0
    seconds_per_window: dict[str, float] = field(default_factory=dict)
    cpu: CpuInfo | None = None


def save_report(path: Path, report: DeployReport) -> None:
    """Write the report as indented JSON, atomically."""
    save_dataclass(path, report)


def load_report(path: Path) -> DeployReport:
    """Read and validate a report (``ConfigError`` naming the file and field when it is not one)."""
    return load_dataclass(DeployReport, path)


def format_report(report: DeployReport) -> str:
    """The report as a plain-text table: one row per fold, step and class, then a summary row per step."""
    lines = [f"{'fold':<5} {'step':<22} {'class':<20} {'float':>7} {report.precision:>7} {'drop':>7}"]
    for fold in report.folds:
        for attempt in fold.attempts:
            for dice in attempt.classes:
                lines.append(f"{fold.fold:<5} {attempt.step:<22} {dice.name[:20]:<20} {dice.float_dice:>7.4f} "
                             f"{dice.deployed_dice:>7.4f} {100 * dice.drop:>+7.2f}")
            verdict = ("accepted" if attempt.passed else "rejected") if report.checked else "not checked"
            lines.append(f"{fold.fold:<5} {attempt.step:<22} {'mean drop / worst':<20} "
                         f"{100 * attempt.mean_drop:>+7.2f} {100 * attempt.max_class_drop:>+7.2f} {verdict:>7}"
                         f"  ({len(attempt.float_nodes)} node(s) float)")
        lines.append(f"{fold.fold:<5} seconds per window: float {fold.float_seconds_per_window:.4f}, "
                     f"{report.precision} {fold.deployed_seconds_per_window:.4f}")
    limits = (f"limits: mean drop {100 * report.max_mean_drop:.2f}, any class {100 * report.max_class_drop:.2f} "
              f"Dice points; cases from {report.split}; mirroring {'on' if report.mirroring else 'off'}")
    lines.append(limits if report.checked else "accuracy not checked")
    if report.backend:
        lines.append(f"runtime: {report.backend}, batch {report.batch_size}, {report.threads} thread(s)")
    if report.cpu is not None:
        lines.append(f"cpu: {report.cpu.model} ({report.cpu.physical_cores} core(s); "
                     f"{' '.join(report.cpu.flags) or 'no avx2'})")
    return "\n".join(lines)
