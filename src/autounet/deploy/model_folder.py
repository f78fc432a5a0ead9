"""Deployed model folders: a trained model as one ONNX graph per fold, predicted by ``autounet predict -m``.

Layout (self-contained; no PyTorch network code is needed to predict with it)::

    OUT/deploy.json            manifest: configuration, folds, precision, channels, mirroring, SHA-256 of every file
    OUT/plans.json             the model's plans (preprocessing, patch size, spacing)
    OUT/dataset.json           its dataset.json (channels, labels, file ending)
    OUT/postprocessing.json    when the model folder has one
    OUT/fold_<f>/model.onnx    float32 graph (deep supervision off, batch and spatial axes dynamic), or
                               the INT8 (QDQ) graph for precision int8
    OUT/deploy_report.json     when checked: Dice float vs deployed per fold and class, latency, CPU
                               (:mod:`autounet.deploy.accuracy`, :mod:`autounet.deploy.report`)

Importing this module registers the layout with :func:`autounet.inference.model_folder.register_model_folder_kind`,
so the predictor runs a deployed folder exactly like a torch one: same preprocessing, sliding window, mirroring,
fold averaging, postprocessing and output geometry; only the patch model differs (ONNX Runtime for float32,
OpenVINO for INT8, whose int8 kernels ONNX Runtime lacks on CPUs).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
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
from autounet.planning.plans import load_plans, save_plans

__all__ = ["MANIFEST_FILE", "DeployManifest", "FoldDeployer", "deploy_model", "is_deployed_model_folder",
           "load_deployed_model", "runtime_of", "verify_deployed_files"]

logger = logging.getLogger(__name__)

MANIFEST_FILE = "deploy.json"
ONNX_FILE = "model.onnx"
# Bounds of deploy.json's numbers: no network has more channels, no measured batch more windows.
MAX_CHANNELS = 2**16
MAX_BATCH_SIZE = 4096
Precision = Literal["fp32", "int8"]


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


class FoldDeployer(Protocol):
    """Writes each fold's deployed graph from its float graph instead of the plain export or quantization
    (the accuracy-checked path, :class:`autounet.deploy.accuracy.CheckedDeployer`)."""

    def deploy_fold(self, model: LoadedModel, fold: str, network: torch.nn.Module, float_graph: Path,
                    target: Path) -> None:
        """Write ``target`` for ``fold`` (raise to refuse the deployment; nothing is left behind)."""

    def finish(self, staging: Path, model: LoadedModel) -> dict[str, Any]:
        """Add files to the folder being written; return manifest fields (``backend``, ``batch_size``,
        ``report``)."""


def deploy_model(model_folder: Path, output: Path, folds: Sequence[int | str] = (0,),
                 checkpoint: str = "checkpoint_final.pt", precision: Precision = "fp32",
                 calibration: np.ndarray | None = None, dynamo: bool = True,
                 deployer: FoldDeployer | None = None) -> DeployManifest:
    """Write a deployed model folder from a trained one (autounet's, installed, or nnU-Net v2's).

    Args:
        model_folder: The trained model folder.
        output: The folder to create; it must not exist yet (nothing of the user's is overwritten).
        folds: Folds to deploy.
        checkpoint: Checkpoint file in each fold folder.
        precision: ``fp32``, or ``int8`` (static post-training quantization, needs ``calibration``).
        calibration: For ``int8``: calibration patches ``(N, C, *patch)`` float32, drawn as training draws
            them (:func:`autounet.deploy.calibration.draw_calibration_patches`).
        dynamo: Export with torch's dynamo exporter (else the TorchScript one; see :mod:`.onnx_export`).
        deployer: Writes each fold's graph from the float export instead (e.g. with the accuracy check);
            ``calibration`` is then its business.

    Returns:
        The manifest written as ``deploy.json``.

    Raises:
        DeployError: The output exists, a cascade stage (not deployable yet), or int8 without calibration.
        CheckpointError: The model folder cannot be loaded.
    """
    output = Path(output)
    if output.exists():
        raise DeployError("the output folder exists; choose a new one (a deployed model is written whole)", output)
    if precision == "int8" and calibration is None and deployer is None:
        raise DeployError("int8 needs calibration patches", output)
    model = load_model_folder(Path(model_folder), folds, checkpoint, "cpu")
    if model.previous_stage is not None:
        raise DeployError(f"'{model.configuration.name}' is a cascade stage; deploying cascades is not supported "
                          "yet (deploy 3d_fullres or 2d)", model_folder)
    staging = output.with_name(f".{output.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)  # a previous attempt killed midway
    staging.mkdir(parents=True)
    try:
        in_channels = model.description.num_channels
        patch = tuple(model.configuration.patch_size)
        for fold, network in zip(folds, model.networks, strict=True):
            if not isinstance(network, torch.nn.Module):
                raise DeployError("only torch models can be deployed (this folder is deployed already?)",
                                  model_folder)
            target = staging / f"fold_{fold}" / ONNX_FILE
            export_onnx(network, (1, in_channels, *patch), model.configuration.network.total_downsampling(),
                        target, dynamo=dynamo)
            if deployer is not None:
                float_graph = target.with_name("float.onnx")
                target.replace(float_graph)
                deployer.deploy_fold(model, str(fold), network, float_graph, target)
                float_graph.unlink()
            elif precision == "int8":
                from autounet.deploy.quantize import quantize_int8  # needs nncf: only for int8

                assert calibration is not None  # checked above
                float_graph = target.with_name("float.onnx")
                target.replace(float_graph)
                quantize_int8(float_graph, calibration, target)
                float_graph.unlink()
        # The loaded (for nnU-Net folders: translated) plans and labels, so the folder needs no converter.
        save_plans(staging / "plans.json", model.plans)
        save_dataset_json(staging / "dataset.json", model.description)
        if (Path(model_folder) / "postprocessing.json").is_file():
            shutil.copyfile(Path(model_folder) / "postprocessing.json", staging / "postprocessing.json")
        extra = deployer.finish(staging, model) if deployer is not None else {}
        files = {path.relative_to(staging).as_posix(): _sha256(path)
                 for path in sorted(staging.rglob("*")) if path.is_file()}
        manifest = DeployManifest(
            schema_version=DeployManifest.SCHEMA_VERSION, configuration=model.configuration.name,
            folds=tuple(str(f) for f in folds), precision=precision, in_channels=in_channels,
            num_outputs=model.num_outputs, mirror_axes=tuple(model.mirror_axes), source=model.origin, files=files,
            **extra)
        save_dataclass(staging / MANIFEST_FILE, manifest)
        staging.rename(output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("deployed %s (%s, folds %s) to %s", model_folder, precision, ", ".join(map(str, folds)), output)
    return manifest


def is_deployed_model_folder(folder: Path) -> bool:
    """Whether ``folder`` is a deployed model folder (holds ``deploy.json``)."""
    return (Path(folder) / MANIFEST_FILE).is_file()


def load_deployed_model(folder: Path, folds: Sequence[int | str] = (), checkpoint: str = "",
                        device: str | torch.device = "cpu", threads: int | None = None,
                        backend: str = "auto") -> LoadedModel:
    """Load a deployed model folder as a :class:`LoadedModel` whose networks are ONNX patch models.

    Every file is checked against the manifest's SHA-256 first.

    Args:
        folder: The deployed model folder.
        folds: Folds to use (default and ``()``: every deployed fold).
        checkpoint: Ignored (deployed folders hold one graph per fold); kept for the loader signature.
        device: Where the predictor accumulates; the graphs themselves run on the CPU (ONNX Runtime, OpenVINO).
        threads: Runtime threads; ``None``: the runtime's choice (every core).
        backend: ``onnxruntime``, ``openvino``, or ``auto``: the manifest's measured choice, else by precision.

    Raises:
        OnnxModelError: A file is missing or altered, a fold was not deployed, or a graph does not fit.
    """
    folder = Path(folder)
    manifest = verify_deployed_files(folder)
    chosen = [str(f) for f in folds] or list(manifest.folds)
    unknown = [f for f in chosen if f not in manifest.folds]
    if unknown:
        raise OnnxModelError(f"fold {unknown[0]} was not deployed (deployed: {', '.join(manifest.folds)})", folder)
    plans = load_plans(folder / "plans.json")
    configuration = plans.configuration(manifest.configuration)
    networks = tuple(open_runtime(runtime_of(manifest, backend), folder / f"fold_{fold}" / ONNX_FILE,
                                  manifest.in_channels, manifest.num_outputs, configuration.ndim, threads=threads)
                     for fold in chosen)
    digest = hashlib.sha256((folder / MANIFEST_FILE).read_bytes()).hexdigest()[:12]
    return LoadedModel(plans=plans, configuration=configuration, description=load_dataset_json(folder / "dataset.json"),
                       networks=networks, num_outputs=manifest.num_outputs, mirror_axes=manifest.mirror_axes,
                       origin=f"{folder.name} ({manifest.precision}, folds {', '.join(chosen)}, {digest})")


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
