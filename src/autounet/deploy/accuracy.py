"""Accuracy-checked deployment: each fold's graph is compared with its float network on that fold's validation
cases, and INT8 falls back step by step (:data:`autounet.deploy.steps.FALLBACK_STEPS`) until the gate holds.

Both networks predict through the same public pipeline as ``autounet predict`` (preprocessing, sliding window,
Gaussian weighting, mirroring unless switched off for speed, export to the original geometry), without
postprocessing, which would apply identically to both. Dice per class is computed against the reference label
maps with :func:`autounet.evaluation.metrics.label_overlaps` and averaged over the fold's cases; a case whose
reference and prediction both lack a class scores 1 for it (perfect agreement), so a false positive on such a
case counts as a drop instead of vanishing from the mean.

A cascade stage is checked as a whole cascade: its previous stage is deployed (and checked on its own) first,
then the torch cascade of each fold (previous stage and this stage) is compared with the deployed cascade of that
fold (the deployed previous stage feeding this stage's graph), as ``autounet predict`` runs either.

The gate (:class:`AccuracyGate`) holds for a fold when the mean drop over classes is at most ``max_mean_drop``
and no class drops by more than ``max_class_drop``. Each fold is gated on its own validation cases and may
accept a different step. When no step holds, the deployment is refused with a one-line
:class:`~autounet.deploy.DeployError`; the report is kept (``<output>.deploy_report.json`` beside the output,
which is never created).
"""

from __future__ import annotations

import logging
import math
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from torch import nn

from autounet.dataset.labels import LabelScheme
from autounet.deploy._deps import DeployError
from autounet.deploy.cpu import CpuInfo, default_threads, read_cpuinfo, seconds_per_window
from autounet.deploy.model_folder import (
    PREVIOUS_STAGE_FOLDER,
    Calibration,
    load_deployed_model,
    network_in_channels,
    stage_calibration,
)
from autounet.deploy.report import REPORT_FILE, ClassDice, DeployReport, FoldReport, StepResult, save_report
from autounet.deploy.runtime import RUNTIMES, open_runtime
from autounet.deploy.steps import FALLBACK_STEPS, QuantizationStep, float_nodes
from autounet.evaluation.metrics import label_overlaps
from autounet.inference.loaded_model import LoadedModel
from autounet.inference.predictor import PredictionSettings, Predictor
from autounet.inference.sliding_window import PatchModel
from autounet.io.images import read_image, read_segmentation
from autounet.progress import progress

__all__ = ["DEFAULT_MAX_CLASS_DROP", "DEFAULT_MAX_MEAN_DROP", "AccuracyGate", "CheckSettings", "CheckedDeployer",
           "ValidationCase", "fold_dice"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_MEAN_DROP = 0.005
DEFAULT_MAX_CLASS_DROP = 0.01
_FP32_STEP = QuantizationStep("fp32", (), "the float32 graph")
_BATCH_SIZES = (1, 2, 4)


@dataclass(frozen=True)
class ValidationCase:
    """A labelled case to check on.

    Attributes:
        case_id: The case's id.
        image_files: Its channel files in channel order.
        label_file: Its reference label map.
    """

    case_id: str
    image_files: tuple[Path, ...]
    label_file: Path


@dataclass(frozen=True)
class AccuracyGate:
    """Tolerances of the check, as Dice fractions (0.005 = 0.5 Dice points)."""

    max_mean_drop: float = DEFAULT_MAX_MEAN_DROP
    max_class_drop: float = DEFAULT_MAX_CLASS_DROP

    def holds(self, classes: Sequence[ClassDice]) -> bool:
        """Whether the mean drop and every class's drop lie within the tolerances (a tiny epsilon absorbs
        float rounding, so a tolerance of 0 accepts an identical prediction)."""
        if not classes:
            return True
        drops = [c.drop for c in classes]
        return (sum(drops) / len(drops) <= self.max_mean_drop + 1e-9
                and max(drops) <= self.max_class_drop + 1e-9)


@dataclass(frozen=True)
class CheckSettings:
    """What :class:`CheckedDeployer` does.

    Attributes:
        precision: ``fp32`` (the float graph, checked once) or ``int8`` (quantized, with the fall-back).
        output: The deployed folder being written (names the kept report when the deployment is refused).
        validation: Validation cases by fold name; ``None`` or a fold without cases: not checked.
        gate: Tolerances.
        calibration: For ``int8``: calibration patches ``(N, C, *patch)`` float32; for a cascade, a mapping
            with each stage's by configuration name.
        method: Quantization method (:data:`autounet.deploy.quantize.METHODS`).
        steps: The fall-back steps, in order.
        use_mirroring: Predict with mirroring in the check (as ``predict`` does by default).
        step_size: Sliding-window step of the check.
        split: Where the validation cases came from (for the report).
        threads: Runtime threads; ``None``: the physical cores (:func:`autounet.deploy.cpu.default_threads`).
        show_progress: Progress bars over the cases of each prediction.
    """

    precision: Literal["fp32", "int8"]
    output: Path
    validation: Mapping[str, Sequence[ValidationCase]] | None = None
    gate: AccuracyGate = field(default_factory=AccuracyGate)
    calibration: Calibration | None = None
    method: str = "nncf"
    steps: tuple[QuantizationStep, ...] = FALLBACK_STEPS
    use_mirroring: bool = True
    step_size: float = 0.5
    split: str = ""
    threads: int | None = None
    show_progress: bool = True


def fold_dice(model: LoadedModel, network: PatchModel, cases: Sequence[ValidationCase], labels: LabelScheme,
              settings: PredictionSettings, description: str = "") -> dict[str, float]:
    """Mean Dice per scored class of one network over cases, predicted as ``autounet predict`` does.

    ``description``: a transient progress bar over the cases with this text; empty: none.

    Returns:
        Dice by class name (``dataset.json``'s names), in output order; see the module docstring for cases
        without the class.
    """
    predictor = Predictor(replace(model, networks=(network,), origin=""), "cpu", settings)
    names = labels.scored_label_names
    values: dict[str, list[float]] = {name: [] for name in names}
    for case in progress(cases, description, total=len(cases), leave=False) if description else cases:
        image, geometry = read_image(case.image_files)
        seg, _ = predictor.predict_array(image, geometry)
        reference, _ = read_segmentation(case.label_file)
        overlaps = label_overlaps(reference, seg, list(names.values()), labels.ignore_label)
        for name, overlap in zip(names, overlaps, strict=True):
            values[name].append(1.0 if math.isnan(overlap.dice) else overlap.dice)
    return {name: float(np.mean(v)) if v else 1.0 for name, v in values.items()}


class CheckedDeployer:
    """Writes each fold's graph with the accuracy check; plugs into
    :func:`autounet.deploy.model_folder.deploy_model` (its ``deployer``).

    After :func:`deploy_model` returns or raises, :attr:`report` holds the report (``None`` before the first
    fold).

    Args:
        settings: What to deploy and how to check it.
    """

    def __init__(self, settings: CheckSettings) -> None:
        if settings.precision == "int8" and settings.calibration is None:
            raise DeployError("int8 needs calibration patches", settings.output)
        self.settings = settings
        self.threads = settings.threads or default_threads()
        self.cpu: CpuInfo = read_cpuinfo()
        self._folds: list[FoldReport] = []
        self.report: DeployReport | None = None
        self.previous: CheckedDeployer | None = None

    @property
    def checked(self) -> bool:
        """Whether any fold has validation cases."""
        return bool(self.settings.validation) and any(self.settings.validation.values())  # type: ignore[union-attr]

    def for_previous_stage(self, model: LoadedModel) -> CheckedDeployer:
        """The deployer of the previous stage of the cascade stage ``model``: the same check, on that stage's
        own calibration patches; kept as :attr:`previous` (its report: :attr:`report` of that one).

        Raises:
            DeployError: int8 without calibration patches for the previous stage.
        """
        assert model.previous_stage is not None
        name = model.previous_stage.configuration.name
        calibration = self.settings.calibration
        patches = calibration.get(name) if isinstance(calibration, Mapping) else None
        if self.settings.precision == "int8" and patches is None:
            raise DeployError(f"int8 of cascade stage '{model.configuration.name}' needs calibration patches of its "
                              f"previous stage '{name}' too (calibration by configuration name)", self.settings.output)
        output = self.settings.output.with_name(f"{self.settings.output.name}.{PREVIOUS_STAGE_FOLDER}")
        self.previous = CheckedDeployer(replace(self.settings, output=output, calibration=patches))
        return self.previous

    def deploy_fold(self, model: LoadedModel, fold: str, network: nn.Module, float_graph: Path,
                    target: Path, previous: Path | None = None) -> None:
        """Write ``target`` for one fold from its float graph: the first step whose graph passes the gate.

        For a cascade stage, ``previous`` is the deployed previous stage; ``model`` (this fold's torch cascade)
        is compared with this stage's graph fed by the deployed previous stage's fold.

        Raises:
            DeployError: No step holds (one line; the report is written beside the output first).
        """
        cases = tuple((self.settings.validation or {}).get(fold, ()))
        labels = LabelScheme.from_description(model.description)
        prediction = PredictionSettings(step_size=self.settings.step_size, use_mirroring=self.settings.use_mirroring,
                                        batch_size=4, show_progress=False)
        bar = f"Fold {fold}, float" if self.settings.show_progress else ""
        reference = fold_dice(model, network, cases, labels, prediction, bar) if cases else None
        steps = self.settings.steps if self.settings.precision == "int8" else (_FP32_STEP,)
        attempts: list[StepResult] = []
        runtime: PatchModel | None = None
        deployed = model
        if previous is not None and reference is not None:
            deployed = replace(model, previous_stage=load_deployed_model(previous, (fold,), threads=self.threads,
                                                                         backend=self._runtime_name()))
        for step in steps:
            kept = self._write_candidate(float_graph, target, step, model)
            runtime = _open(self._runtime_name(), target, model, self.threads)
            classes: tuple[ClassDice, ...] = ()
            if reference is not None:
                bar = f"Fold {fold}, {step.name}" if self.settings.show_progress else ""
                dice = fold_dice(deployed, runtime, cases, labels, prediction, bar)
                classes = tuple(ClassDice(name, reference[name], dice[name]) for name in reference)
            attempts.append(StepResult(step.name, kept, classes, self.settings.gate.holds(classes)))
            logger.info("fold %s, step %s: mean Dice drop %.2f points, worst class %.2f", fold, step.name,
                        100 * attempts[-1].mean_drop, 100 * attempts[-1].max_class_drop)
            if attempts[-1].passed:
                break
        assert runtime is not None  # steps is never empty
        window = (1, network_in_channels(model), *model.configuration.patch_size)
        self._folds.append(FoldReport(
            fold=fold, cases=tuple(c.case_id for c in cases), attempts=tuple(attempts),
            accepted=attempts[-1].step if attempts[-1].passed else "",
            float_seconds_per_window=seconds_per_window(network, window),
            deployed_seconds_per_window=seconds_per_window(runtime, window)))
        if not attempts[-1].passed:
            kept_report = self.settings.output.with_name(f"{self.settings.output.name}.{REPORT_FILE}")
            self.report = self._build_report(accepted=False)
            save_report(kept_report, self.report)
            last = attempts[-1]
            raise DeployError(f"fold {fold}: no quantization step keeps the Dice within the tolerances (last step "
                              f"'{last.step}': mean drop {100 * last.mean_drop:.2f}, worst class "
                              f"{100 * last.max_class_drop:.2f} Dice points); nothing deployed, report in "
                              f"{kept_report}", self.settings.output)

    def finish(self, staging: Path, model: LoadedModel) -> dict[str, Any]:
        """Measure the runtimes on the first fold's graph, write the report into ``staging``.

        Returns:
            The manifest fields it decides: ``backend``, ``batch_size`` and ``report``.
        """
        first = self._folds[0].fold
        graph = staging / f"fold_{first}" / "model.onnx"
        timings: dict[str, float] = {}
        for name in RUNTIMES:
            try:
                runtime = _open(name, graph, model, self.threads)
            except DeployError:  # the runtime is not installed: not a candidate
                continue
            window = (1, network_in_channels(model), *model.configuration.patch_size)
            timings[f"{name}/b1"] = seconds_per_window(runtime, window, repeats=2)
        backend = min(timings, key=timings.__getitem__).split("/")[0]
        runtime = _open(backend, graph, model, self.threads)
        for batch in _BATCH_SIZES[1:]:
            window = (batch, network_in_channels(model), *model.configuration.patch_size)
            timings[f"{backend}/b{batch}"] = seconds_per_window(runtime, window, repeats=2)
        best = min((key for key in timings if key.startswith(f"{backend}/")), key=timings.__getitem__)
        self.report = replace(self._build_report(accepted=True), backend=backend,
                              batch_size=int(best.split("/b")[1]), seconds_per_window=timings)
        save_report(staging / REPORT_FILE, self.report)
        return {"backend": backend, "batch_size": self.report.batch_size, "report": REPORT_FILE}

    def _write_candidate(self, float_graph: Path, target: Path, step: QuantizationStep,
                         model: LoadedModel) -> tuple[str, ...]:
        """Write the step's graph of ``model``'s stage to ``target``; return the nodes it kept in float.

        Raises:
            DeployError: int8 without calibration patches for this stage.
        """
        if self.settings.precision == "fp32":
            shutil.copyfile(float_graph, target)
            return ()
        from autounet.deploy.quantize import quantize_int8  # needs nncf or onnxruntime: only for int8

        patches = stage_calibration(self.settings.calibration, model.configuration.name)
        if patches is None:
            raise DeployError(f"int8 needs calibration patches of '{model.configuration.name}'", self.settings.output)
        kept = float_nodes(float_graph, step)
        quantize_int8(float_graph, patches, target, keep_float=kept, method=self.settings.method)
        return kept

    def _runtime_name(self) -> str:
        # OpenVINO has the int8 kernels ONNX Runtime lacks on CPUs; float graphs run on ONNX Runtime.
        return "openvino" if self.settings.precision == "int8" else "onnxruntime"

    def _build_report(self, accepted: bool) -> DeployReport:
        gate = self.settings.gate
        return DeployReport(
            schema_version=DeployReport.SCHEMA_VERSION, precision=self.settings.precision, checked=self.checked,
            max_mean_drop=gate.max_mean_drop, max_class_drop=gate.max_class_drop,
            mirroring=self.settings.use_mirroring, split=self.settings.split, folds=tuple(self._folds),
            accepted=accepted, threads=self.threads, cpu=self.cpu)


def _open(name: str, graph: Path, model: LoadedModel, threads: int) -> PatchModel:
    return open_runtime(name, graph, network_in_channels(model), model.num_outputs, model.configuration.ndim,
                        threads)
