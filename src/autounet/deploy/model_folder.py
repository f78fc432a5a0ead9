"""Deployed model folders: a trained model as one ONNX graph per fold, predicted by ``autounet predict -m``.

Layout (self-contained; no PyTorch network code is needed to predict with it)::

    OUT/deploy.json            manifest: configuration, folds, precision, channels, mirroring, SHA-256 of every file
    OUT/plans.json             the model's plans (preprocessing, patch size, spacing)
    OUT/dataset.json           its dataset.json (channels, labels, file ending)
    OUT/postprocessing.json    the model folder's, or the one find-best chose for it (what predict applies)
    OUT/fold_<f>/model.onnx    float32 graph (deep supervision off, batch and spatial axes dynamic), or
                               the INT8 (QDQ) graph for precision int8
    OUT/previous_stage/        for a cascade stage: its previous stage, itself a complete deployed folder (same
                               folds and precision; recursive), whose files the outer deploy.json lists too
    OUT/deploy_report.json     when checked: Dice float vs deployed per fold and class, latency, CPU
                               (:mod:`autounet.deploy.accuracy`, :mod:`autounet.deploy.report`)

Importing this module registers the layout with :func:`autounet.inference.model_folder.register_model_folder_kind`,
so the predictor runs a deployed folder exactly like a torch one: same preprocessing, sliding window, mirroring,
fold averaging, postprocessing and output geometry; only the patch model differs (ONNX Runtime for float32,
OpenVINO for INT8, whose int8 kernels ONNX Runtime lacks on CPUs). A deployed cascade stage loads with its deployed
previous stage as :attr:`LoadedModel.previous_stage`, so the predictor runs the whole cascade as for torch: the
previous stage first, then this stage's graph on the image channels plus the one-hot previous segmentation.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
import torch

from autounet.dataset.description import load_dataset_json, save_dataset_json
from autounet.deploy._deps import DeployError, OnnxModelError
from autounet.deploy.onnx_export import export_onnx
from autounet.deploy.runtime import open_runtime
from autounet.inference.loaded_model import LoadedModel
from autounet.inference.model_folder import load_model_folder, register_model_folder_kind
from autounet.io.serialization import load_dataclass, save_dataclass
from autounet.planning.plans import ConfigurationPlan, load_plans, save_plans

__all__ = ["MANIFEST_FILE", "PREVIOUS_STAGE_FOLDER", "DeployManifest", "FoldDeployer", "deploy_model",
           "is_deployed_model_folder", "load_deployed_model", "network_in_channels", "runtime_of",
           "stage_calibration", "verify_deployed_files"]

logger = logging.getLogger(__name__)

MANIFEST_FILE = "deploy.json"
ONNX_FILE = "model.onnx"
PREVIOUS_STAGE_FOLDER = "previous_stage"
# Bounds of deploy.json's numbers: no network has more channels, no measured batch more windows.
MAX_CHANNELS = 2**16
MAX_BATCH_SIZE = 4096
Precision = Literal["fp32", "int8"]
Calibration = np.ndarray | Mapping[str, np.ndarray]
"""Calibration patches ``(N, C, *patch)`` float32: an array for a single-stage model, else one per stage by
configuration name (a cascade stage's carry the one-hot previous-stage channels after the image's)."""


@dataclass(frozen=True)
class DeployManifest:
    """What a deployed model folder holds (``deploy.json``).

    Attributes:
        schema_version: Version of this file layout.
        configuration: The configuration the folds were trained with.
        folds: Fold names (``"0"``, ``"all"``), each with ``fold_<f>/model.onnx``.
        precision: ``fp32`` or ``int8``.
        in_channels: Input channels of the graphs.
        num_outputs: Output channels (classes incl. background, or regions).
        mirror_axes: Patch axes the model was trained mirror-invariant on (test-time augmentation).
        source: The model folder it was deployed from.
        files: SHA-256 of every other file, by path relative to the folder.
        backend: The runtime measured fastest at deployment (``predict --backend auto``); empty: by precision
            (ONNX Runtime for fp32, OpenVINO for int8).
        batch_size: Windows per runtime call measured fastest; 0: the predictor's default.
        report: The accuracy and latency report (:mod:`autounet.deploy.report`) in the folder; empty: none.
        previous_stage: For a cascade stage, the subfolder holding its deployed previous stage; empty: none.
    """

    SCHEMA_VERSION: ClassVar[int] = 2

    schema_version: int
    configuration: str
    folds: tuple[str, ...]
    precision: Precision
    in_channels: int
    num_outputs: int
    mirror_axes: tuple[int, ...] = ()
    source: str = ""
    files: dict[str, str] = field(default_factory=dict)
    backend: str = ""
    batch_size: int = 0
    report: str = ""
    previous_stage: str = ""

    def __post_init__(self) -> None:
        # deploy.json lists every file's SHA-256 but not its own, so its values are checked like foreign input:
        # they size the predictor's batches and its mirroring.
        if self.in_channels < 1 or self.num_outputs < 1 or max(self.in_channels, self.num_outputs) > MAX_CHANNELS:
            raise ValueError(f"in_channels {self.in_channels} and num_outputs {self.num_outputs} must lie in "
                             f"1..{MAX_CHANNELS}")
        if not 0 <= self.batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"batch_size must lie in 0..{MAX_BATCH_SIZE}, got {self.batch_size}")
        if len(set(self.mirror_axes)) != len(self.mirror_axes) or any(not 0 <= a < 3 for a in self.mirror_axes):
            raise ValueError(f"mirror_axes must be distinct axes 0..2, got {list(self.mirror_axes)}")
        if not self.folds:
            raise ValueError("folds lists no fold")
        if self.previous_stage and (Path(self.previous_stage).name != self.previous_stage
                                    or self.previous_stage in (".", "..")):
            raise ValueError(f"previous_stage must name a subfolder, got '{self.previous_stage}'")


class FoldDeployer(Protocol):
    """Writes each fold's deployed graph from its float graph instead of the plain export or quantization
    (the accuracy-checked path, :class:`autounet.deploy.accuracy.CheckedDeployer`)."""

    def deploy_fold(self, model: LoadedModel, fold: str, network: torch.nn.Module, float_graph: Path,
                    target: Path, previous: Path | None = None) -> None:
        """Write ``target`` for ``fold`` (raise to refuse the deployment; nothing is left behind).

        ``model`` holds this fold's network only (and, for a cascade stage, a previous stage of this fold only);
        ``previous`` is then the previous stage's deployed folder, complete already."""

    def finish(self, staging: Path, model: LoadedModel) -> dict[str, Any]:
        """Add files to the folder being written; return manifest fields (``backend``, ``batch_size``,
        ``report``)."""

    def for_previous_stage(self, model: LoadedModel) -> FoldDeployer:
        """The deployer of the previous stage of the cascade stage ``model`` (deployed first)."""


def deploy_model(model_folder: Path, output: Path, folds: Sequence[int | str] = (0,),
                 checkpoint: str = "checkpoint_final.pt", precision: Precision = "fp32",
                 calibration: Calibration | None = None, dynamo: bool = True,
                 deployer: FoldDeployer | None = None, postprocessing: Path | None = None) -> DeployManifest:
    """Write a deployed model folder from a trained one (autounet's, installed, or nnU-Net v2's).

    A cascade stage is deployed with its previous stage (same folds and precision) in ``previous_stage/``.

    Args:
        model_folder: The trained model folder.
        output: The folder to create; it must not exist yet (nothing of the user's is overwritten).
        folds: Folds to deploy.
        checkpoint: Checkpoint file in each fold folder.
        precision: ``fp32``, or ``int8`` (static post-training quantization, needs ``calibration``).
        calibration: For ``int8``: calibration patches ``(N, C, *patch)`` float32, drawn as training draws
            them (:func:`autounet.deploy.calibration.draw_calibration_patches`); for a cascade, a mapping with
            each stage's by configuration name.
        dynamo: Export with torch's dynamo exporter (else the TorchScript one; see :mod:`.onnx_export`).
        deployer: Writes each fold's graph from the float export instead (e.g. with the accuracy check);
            ``calibration`` is then its business.
        postprocessing: The ``postprocessing.json`` to carry (e.g. the one ``find-best`` chose for this
            configuration); by default the model folder's own, if it has one.

    Returns:
        The manifest written as ``deploy.json``.

    Raises:
        DeployError: The output exists, or int8 without calibration (for a cascade: without each stage's).
        CheckpointError: The model folder cannot be loaded.
    """
    output = Path(output)
    if output.exists():
        raise DeployError("the output folder exists; choose a new one (a deployed model is written whole)", output)
    if precision == "int8" and calibration is None and deployer is None:
        raise DeployError("int8 needs calibration patches", output)
    model = load_model_folder(Path(model_folder), folds, checkpoint, "cpu")
    stage: LoadedModel | None = model
    while stage is not None:
        if not all(isinstance(network, torch.nn.Module) for network in stage.networks):
            raise DeployError("only torch models can be deployed (this folder is deployed already?)", model_folder)
        stage = stage.previous_stage
    if precision == "int8" and deployer is None:
        _check_stage_calibration(model, calibration, output)
    staging = output.with_name(f".{output.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)  # a previous attempt killed midway
    try:
        own = Path(model_folder) / "postprocessing.json"
        carried = postprocessing if postprocessing is not None else (own if own.is_file() else None)
        manifest = _write_stage(model, _StageJob(folds, precision, calibration, dynamo, deployer), staging, carried)
        staging.rename(output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("deployed %s (%s, folds %s) to %s", model_folder, precision, ", ".join(map(str, folds)), output)
    return manifest


@dataclass(frozen=True)
class _StageJob:
    """What :func:`_write_stage` writes for every stage of a model (see :func:`deploy_model`)."""

    folds: Sequence[int | str]
    precision: Precision
    calibration: Calibration | None
    dynamo: bool
    deployer: FoldDeployer | None


def _write_stage(model: LoadedModel, job: _StageJob, staging: Path, postprocessing: Path | None) -> DeployManifest:
    """Write one stage's deployed folder into ``staging`` (created), its previous stage first, in a subfolder.

    The previous stage's ``postprocessing.json`` is left out: cascade prediction never applies it.
    """
    staging.mkdir(parents=True)
    previous_folder = staging / PREVIOUS_STAGE_FOLDER if model.previous_stage is not None else None
    if model.previous_stage is not None:
        assert previous_folder is not None
        inner = replace(job, deployer=job.deployer.for_previous_stage(model) if job.deployer is not None else None)
        _write_stage(model.previous_stage, inner, previous_folder, None)
    in_channels = network_in_channels(model)
    patch = tuple(model.configuration.patch_size)
    for index, (fold, network) in enumerate(zip(job.folds, model.networks, strict=True)):
        assert isinstance(network, torch.nn.Module)  # checked by deploy_model
        target = staging / f"fold_{fold}" / ONNX_FILE
        export_onnx(network, (1, in_channels, *patch), model.configuration.network.total_downsampling(),
                    target, dynamo=job.dynamo)
        if job.deployer is not None or job.precision == "int8":
            float_graph = target.with_name("float.onnx")
            target.replace(float_graph)
            if job.deployer is not None:
                job.deployer.deploy_fold(_fold_model(model, index), str(fold), network, float_graph, target,
                                         previous_folder)
            else:
                from autounet.deploy.quantize import quantize_int8  # needs nncf: only for int8

                patches = stage_calibration(job.calibration, model.configuration.name)
                assert patches is not None  # checked by _check_stage_calibration before anything is written
                quantize_int8(float_graph, patches, target)
            float_graph.unlink()
    # The loaded (for nnU-Net folders: translated) plans and labels, so the folder needs no converter.
    save_plans(staging / "plans.json", model.plans)
    save_dataset_json(staging / "dataset.json", model.description)
    if postprocessing is not None:
        shutil.copyfile(postprocessing, staging / "postprocessing.json")
    extra = job.deployer.finish(staging, model) if job.deployer is not None else {}
    files = {path.relative_to(staging).as_posix(): _sha256(path)
             for path in sorted(staging.rglob("*")) if path.is_file()}
    manifest = DeployManifest(
        schema_version=DeployManifest.SCHEMA_VERSION, configuration=model.configuration.name,
        folds=tuple(str(f) for f in job.folds), precision=job.precision, in_channels=in_channels,
        num_outputs=model.num_outputs, mirror_axes=tuple(model.mirror_axes), source=model.origin, files=files,
        previous_stage=PREVIOUS_STAGE_FOLDER if previous_folder is not None else "", **extra)
    save_dataclass(staging / MANIFEST_FILE, manifest)
    return manifest


def network_in_channels(model: LoadedModel) -> int:
    """Input channels of ``model``'s networks: the image's, plus one one-hot channel per foreground label for a
    cascade stage (as :func:`autounet.inference.model_folder.load_model_folder` builds them)."""
    extra = len(model.description.foreground_labels) if model.previous_stage is not None else 0
    return model.description.num_channels + extra


def _fold_model(model: LoadedModel, index: int) -> LoadedModel:
    """``model`` with only its ``index``-th fold's network, in every stage of a cascade."""
    previous = _fold_model(model.previous_stage, index) if model.previous_stage is not None else None
    return replace(model, networks=(model.networks[index],), previous_stage=previous)


def stage_calibration(calibration: Calibration | None, configuration: str) -> np.ndarray | None:
    """The calibration patches of one stage: the array itself, or the mapping's entry for ``configuration``
    (``None`` when there is none)."""
    if isinstance(calibration, Mapping):
        return calibration.get(configuration)
    return calibration


def _check_stage_calibration(model: LoadedModel, calibration: Calibration | None, output: Path) -> None:
    """Refuse int8 unless every stage has calibration patches: an array fits a single-stage model only.

    Raises:
        DeployError: A stage lacks them (naming the stages a mapping needs).
    """
    stages = [model.configuration.name]
    previous = model.previous_stage
    while previous is not None:
        stages.append(previous.configuration.name)
        previous = previous.previous_stage
    if len(stages) == 1 and isinstance(calibration, np.ndarray):
        return
    missing = [name for name in stages if not isinstance(calibration, Mapping) or name not in calibration]
    if missing:
        raise DeployError(f"int8 of '{stages[0]}' needs calibration patches for every stage, by configuration name "
                          f"({', '.join(stages)}); missing: {', '.join(missing)}", output)


def is_deployed_model_folder(folder: Path) -> bool:
    """Whether ``folder`` is a deployed model folder (holds ``deploy.json``)."""
    return (Path(folder) / MANIFEST_FILE).is_file()


def load_deployed_model(folder: Path, folds: Sequence[int | str] = (), checkpoint: str = "",
                        device: str | torch.device = "cpu", threads: int | None = None,
                        backend: str = "auto") -> LoadedModel:
    """Load a deployed model folder as a :class:`LoadedModel` whose networks are ONNX patch models.

    Every file is checked against the manifest's SHA-256 first. A cascade stage comes with its deployed previous
    stage (same folds, threads and backend) as ``previous_stage``.

    Args:
        folder: The deployed model folder.
        folds: Folds to use (default and ``()``: every deployed fold).
        checkpoint: Ignored (deployed folders hold one graph per fold); kept for the loader signature.
        device: Where the predictor accumulates; the graphs themselves run on the CPU (ONNX Runtime, OpenVINO).
        threads: Runtime threads; ``None``: the runtime's choice (every core).
        backend: ``onnxruntime``, ``openvino``, or ``auto``: the manifest's measured choice, else by precision.

    Raises:
        OnnxModelError: A file is missing or altered, a fold was not deployed, or a graph does not fit; for a
            cascade stage, its previous stage's folder is missing or is not the stage the plans name.
    """
    folder = Path(folder)
    return _load_verified(folder, verify_deployed_files(folder), folds, threads, backend)


def _load_verified(folder: Path, manifest: DeployManifest, folds: Sequence[int | str], threads: int | None,
                   backend: str) -> LoadedModel:
    """:func:`load_deployed_model` of a folder whose files are verified already (for a previous stage: by the
    outer manifest, which lists them all, its ``deploy.json`` included)."""
    chosen = [str(f) for f in folds] or list(manifest.folds)
    unknown = [f for f in chosen if f not in manifest.folds]
    if unknown:
        raise OnnxModelError(f"fold {unknown[0]} was not deployed (deployed: {', '.join(manifest.folds)})", folder)
    plans = load_plans(folder / "plans.json")
    configuration = plans.configuration(manifest.configuration)
    previous = _load_previous_stage(folder, manifest, configuration, chosen, threads, backend)
    networks = tuple(open_runtime(runtime_of(manifest, backend), folder / f"fold_{fold}" / ONNX_FILE,
                                  manifest.in_channels, manifest.num_outputs, configuration.ndim, threads=threads)
                     for fold in chosen)
    digest = hashlib.sha256((folder / MANIFEST_FILE).read_bytes()).hexdigest()[:12]
    return LoadedModel(plans=plans, configuration=configuration, description=load_dataset_json(folder / "dataset.json"),
                       networks=networks, num_outputs=manifest.num_outputs, mirror_axes=manifest.mirror_axes,
                       previous_stage=previous,
                       origin=f"{folder.name} ({manifest.precision}, folds {', '.join(chosen)}, {digest})")


def _load_previous_stage(folder: Path, manifest: DeployManifest, configuration: ConfigurationPlan,
                         folds: Sequence[str], threads: int | None, backend: str) -> LoadedModel | None:
    """The deployed previous stage of a cascade stage (``None`` for any other), checked to be the plans' one.

    Raises:
        OnnxModelError: The plans call for a previous stage the folder lacks, or it deploys another one.
    """
    if configuration.previous_stage is None and not manifest.previous_stage:
        return None
    if configuration.previous_stage is None or not manifest.previous_stage:
        raise OnnxModelError(f"deploy.json's previous_stage '{manifest.previous_stage}' does not fit configuration "
                             f"'{configuration.name}', whose previous stage is "
                             f"'{configuration.previous_stage or 'none'}'; redeploy the model", folder / MANIFEST_FILE)
    inner = folder / manifest.previous_stage
    if not is_deployed_model_folder(inner):
        raise OnnxModelError(f"the deployed previous stage '{configuration.previous_stage}' is missing (no "
                             f"{MANIFEST_FILE}); redeploy the model", inner)
    previous = _load_verified(inner, load_dataclass(DeployManifest, inner / MANIFEST_FILE), folds, threads, backend)
    if previous.configuration.name != configuration.previous_stage:
        raise OnnxModelError(f"holds '{previous.configuration.name}', but '{configuration.name}' needs its previous "
                             f"stage '{configuration.previous_stage}'; redeploy the model", inner)
    return previous


def verify_deployed_files(folder: Path) -> DeployManifest:
    """Read ``deploy.json`` and check every file it lists against its SHA-256.

    Args:
        folder: A deployed model folder.

    Returns:
        The manifest.

    Raises:
        ConfigError: ``deploy.json`` is malformed.
        OnnxModelError: A listed file is missing or altered, or a name leaves the folder.
    """
    folder = Path(folder)
    manifest = load_dataclass(DeployManifest, folder / MANIFEST_FILE)
    for name, expected in manifest.files.items():
        path = folder / name
        if ".." in Path(name).parts or Path(name).is_absolute():
            raise OnnxModelError(f"deploy.json lists '{name}', which lies outside the folder", folder)
        if not path.is_file() or _sha256(path) != expected:
            raise OnnxModelError("missing or altered since it was deployed (SHA-256 differs from deploy.json)", path)
    return manifest


def runtime_of(manifest: DeployManifest, backend: str = "auto") -> str:
    """The runtime a deployed folder runs on: ``backend`` unless ``auto``, else the manifest's measured choice,
    else OpenVINO for int8 (ONNX Runtime lacks int8 kernels on CPUs) and ONNX Runtime for fp32."""
    if backend != "auto":
        return backend
    return manifest.backend or ("openvino" if manifest.precision == "int8" else "onnxruntime")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(8 * 2**20):
            digest.update(chunk)
    return digest.hexdigest()


register_model_folder_kind("deployed", is_deployed_model_folder, load_deployed_model)
