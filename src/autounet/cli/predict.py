"""``autounet predict``: segment a folder of images with a trained configuration."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from autounet.cli._common import (
    add_device_argument,
    batch_count,
    dataset_spec,
    fold,
    fraction,
    non_negative_float,
    output_folder,
    positive_int,
    unit_interval,
    worker_count,
)
from autounet.dataset.raw import find_raw_dataset
from autounet.devices import resolve_device
from autounet.errors import CheckpointError, ConfigError, DatasetError
from autounet.paths import Paths
from autounet.postprocessing import (
    POSTPROCESSING_FILE,
    PostprocessingPlan,
    TaskPostprocessing,
    load_any_postprocessing,
)

__all__ = ["add_model_arguments", "available_folds", "model_folder_for", "postprocessing_for", "register", "run"]

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnxruntime", "openvino")


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    """Add the ``predict`` subcommand."""
    parser = subparsers.add_parser(
        "predict", parents=[parent], help="segment a folder of images with a trained model",
        description="Segment every <case>_NNNN<ending> case of a folder with the folds of a trained configuration "
                    "(logits averaged over folds). Outputs keep the input geometry exactly; cases whose output "
                    "exists are skipped, so an interrupted run resumes when started again. A cascade "
                    "configuration (3d_cascade_fullres) runs its low-resolution stage first, from the sibling "
                    "model folder. The model's dataset.json and plans.json are written beside the outputs (never "
                    "over such files autounet did not write); a folder predicted by another model is refused "
                    "unless --overwrite.")
    parser.add_argument("-i", "--input", required=True, type=Path, metavar="DIR", help="folder of input images")
    parser.add_argument("-o", "--output", required=True, type=output_folder, metavar="DIR",
                        help="folder for segmentations")
    add_model_arguments(parser)
    parser.add_argument("--step-size", type=fraction, default=0.5, help="window step as a patch fraction (0.5)")
    parser.add_argument("--disable-tta", action="store_true", help="no mirroring test-time augmentation (faster)")
    parser.add_argument("--save-probabilities", action="store_true", help="also write <case>.npz probabilities")
    add_device_argument(parser)
    parser.add_argument("--batch-size", type=batch_count, default=None, metavar="N",
                        help="windows per network call (default: what 'autounet deploy' measured fastest for a "
                             "deployed folder, else 4 on the CPU, where batching roughly halves the time per "
                             "window, and 1 on a GPU); results do not depend on it")
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="what runs the network: torch (trained model folders), onnxruntime or openvino "
                             "(deployed folders); auto (default): torch, or the runtime 'autounet deploy' measured "
                             "fastest")
    parser.add_argument("--threads", type=worker_count, default=None, metavar="N",
                        help="CPU threads of the network (default: the physical cores this process may use)")
    parser.add_argument("--overwrite", action="store_true",
                        help="predict every case again, replacing earlier outputs (also another model's)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch backend on the CPU: channels-last weights and torch.compile (default: for 3D "
                             "models on AVX-512 CPUs, where it was measured faster, once a minute of windows "
                             "repays the compilation)")
    parser.add_argument("--checkpoint", default="checkpoint_final.pt", metavar="NAME",
                        help="checkpoint file in each fold folder (default: %(default)s)")
    post = parser.add_mutually_exclusive_group()
    post.add_argument("--postprocessing", type=Path, metavar="FILE",
                      help=f"apply this {POSTPROCESSING_FILE} to every label map (default: the model folder's "
                           f"{POSTPROCESSING_FILE} when it has one, else the one find-best chose for this "
                           "configuration)")
    post.add_argument("--no-postprocessing", action="store_true",
                      help="apply no postprocessing (neither the model folder's nor find-best's)")
    parser.add_argument("--line-source", choices=("head", "boundary"), default="head",
                        help="models of several label maps: where line tasks come from; head (default): their own "
                             "output, thinned to a one-pixel line; boundary: the border between the labels that "
                             "dataset.json's \"boundary\" of the line task names, in the predicted area map (the "
                             "calving front as glacier next to ocean)")
    _add_detection_arguments(parser)
    parser.set_defaults(handler=run)


# Flag -> field of DetectionInference: a detection model's inference parameters, overriding the swept ones.
_DETECTION_FLAGS = {"score_threshold": "score_threshold", "nms_iou": "nms_iou", "cluster_iou": "cluster_iou",
                    "min_size": "min_size", "boxes_per_image": "detections_per_image"}


def _add_detection_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "detection models", "override the inference parameters swept on the fold's validation cases "
                            "(fold_N/detection_inference.json; the plan's defaults where a fold has none)")
    group.add_argument("--score-threshold", type=unit_interval, metavar="P", help="drop boxes scoring below P")
    group.add_argument("--nms-iou", type=unit_interval, metavar="IOU",
                       help="per window, suppress a box overlapping a better one of its class by more than IOU")
    group.add_argument("--cluster-iou", type=unit_interval, metavar="IOU",
                       help="fuse boxes of windows, mirrorings and folds overlapping by more than IOU")
    group.add_argument("--min-size", type=non_negative_float, metavar="VOXELS",
                       help="drop boxes narrower than VOXELS (of the preprocessed grid) along any axis")
    group.add_argument("--boxes-per-image", type=positive_int, metavar="N", help="keep the N best boxes per case")
    group.add_argument("--save-box-map", nargs="?", const=0.5, type=unit_interval, metavar="P",
                       help="also write <case>_boxes<ending>: the boxes scoring at least P (default 0.5) as a label "
                            "map (class labels; the higher score wins where boxes overlap)")


def run(args: argparse.Namespace, paths: Paths) -> int:
    """Predict every case of ``args.input`` into ``args.output``."""
    # Imported here, not at the top: building the parser (`autounet -h`) must not import torch (seconds).
    from autounet.deploy.model_folder import is_deployed_model_folder  # also lets the predictor load them
    from autounet.inference.box_prediction import is_detection_model_folder
    from autounet.inference.cpu_memory import tune_cpu_allocator
    from autounet.inference.nnunet_model import is_nnunet_model_folder, nnunet_checkpoint_name
    from autounet.inference.predictor import PredictionSettings, Predictor

    device = resolve_device(args.device)
    logger.info("device: %s", device)
    model_folder = model_folder_for(args, paths)
    # An nnU-Net v2 model folder names its checkpoints .pth (checkpoint_final.pth).
    checkpoint = nnunet_checkpoint_name(args.checkpoint) if is_nnunet_model_folder(model_folder) else args.checkpoint
    if args.folds:
        folds = _parse_folds(args.folds)
    else:  # a deployed model: every deployed fold
        folds = [] if is_deployed_model_folder(model_folder) else available_folds(model_folder, checkpoint)
    if is_detection_model_folder(model_folder):
        return _predict_boxes(args, model_folder, folds, checkpoint, device)
    given = [flag for flag in (*_DETECTION_FLAGS, "save_box_map") if getattr(args, flag, None) is not None]
    if given:
        raise ConfigError(f"--{given[0].replace('_', '-')} applies to detection models only; this is a "
                          "segmentation model", model_folder)
    deployed = is_deployed_model_folder(model_folder)
    backend, threads, batch_size = _backend(args, model_folder, deployed, device)
    settings = PredictionSettings(step_size=args.step_size, use_mirroring=not args.disable_tta,
                                  save_probabilities=args.save_probabilities,
                                  batch_size=args.batch_size or batch_size or (4 if device == "cpu" else 1),
                                  show_progress=not getattr(args, "quiet", False),
                                  postprocessing=postprocessing_for(args, model_folder),
                                  overwrite=bool(getattr(args, "overwrite", False)),
                                  compile=getattr(args, "compile", None),
                                  line_source=getattr(args, "line_source", "head"))
    if device == "cpu":
        tune_cpu_allocator()
    if deployed:
        from autounet.deploy.model_folder import load_deployed_model

        model = load_deployed_model(model_folder, folds, device=device, threads=threads, backend=backend)
        predictor = Predictor(model, device, settings)
    else:
        predictor = Predictor.from_model_folder(model_folder, folds, checkpoint, device, settings)
    outputs = predictor.predict_folder(args.input, args.output)
    print(f"predicted: {len(outputs)} case(s) in {args.output}")
    return 0


def _predict_boxes(args: argparse.Namespace, model_folder: Path, folds: list, checkpoint: str, device: str) -> int:
    """A detection model: ``<case>_boxes.json`` per case (world and voxel boxes, class, score)."""
    from autounet.inference.box_prediction import BoxPredictor, load_detection_model

    overrides = {field: getattr(args, flag) for flag, field in _DETECTION_FLAGS.items()
                 if getattr(args, flag, None) is not None}
    model = load_detection_model(model_folder, folds, checkpoint, device, overrides)
    _announce(args, f"inference parameters: {model.inference_source}")
    predictor = BoxPredictor(model, device, step_size=args.step_size, use_mirroring=not args.disable_tta,
                             show_progress=not getattr(args, "quiet", False))
    outputs = predictor.predict_folder(args.input, args.output, overwrite=bool(getattr(args, "overwrite", False)),
                                       box_map_min_score=getattr(args, "save_box_map", None))
    print(f"predicted boxes: {len(outputs)} case(s) in {args.output} (<case>_boxes.json)")
    return 0


def _backend(args: argparse.Namespace, model_folder: Path, deployed: bool, device: str) -> tuple[str, int, int]:
    """The backend, its threads and the deployment's measured batch size (0: none), printed once.

    Raises:
        ConfigError: A backend the model folder cannot run (torch for a deployed folder, a runtime for a torch one).
    """
    from autounet.deploy.cpu import default_threads

    threads = args.threads or default_threads()
    if not deployed:
        if args.backend not in ("auto", "torch"):
            raise ConfigError(f"--backend {args.backend} runs deployed model folders ('autounet deploy'); this is a "
                              "torch model folder: use --backend torch or auto", model_folder)
        import torch

        if device == "cpu" and args.threads:  # else torch's own choice, which is the physical cores too
            torch.set_num_threads(args.threads)
        threads = torch.get_num_threads()
        _announce(args, f"backend: torch on {device}" + (f", {threads} thread(s)" if device == "cpu" else ""))
        return "torch", threads, 0
    from autounet.deploy.model_folder import MANIFEST_FILE, DeployManifest, runtime_of
    from autounet.io.serialization import load_dataclass

    if args.backend == "torch":
        raise ConfigError("a deployed model folder holds ONNX graphs, not torch networks: use --backend auto, "
                          "onnxruntime or openvino (or predict with the trained model folder)", model_folder)
    manifest = load_dataclass(DeployManifest, model_folder / MANIFEST_FILE)
    backend = runtime_of(manifest, args.backend)
    _announce(args, f"backend: {backend} ({manifest.precision}), {threads} thread(s)")
    return backend, threads, manifest.batch_size


def _announce(args: argparse.Namespace, line: str) -> None:
    if not getattr(args, "quiet", False):
        print(line)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``-d/-c`` or ``-m``, and ``-f``: which trained model, shared by the commands that use one."""
    parser.add_argument("-d", "--dataset", type=dataset_spec, metavar="ID",
                        help="dataset id, folder name or short name (with -c)")
    parser.add_argument("-c", "--configuration", help="2d, 3d_fullres, ... (with -d)")
    parser.add_argument("-m", "--model-folder", type=Path, metavar="DIR",
                        help="a model folder instead of -d/-c: results/<Dataset>/<run folder>, an installed or "
                             "deployed model, or an nnU-Net v2 trained model folder")
    parser.add_argument("-f", "--folds", nargs="+", type=fold, metavar="FOLD",
                        help="folds to ensemble, indices or 'all' (default: every fold_N with the checkpoint)")


def model_folder_for(args: argparse.Namespace, paths: Paths) -> Path:
    """``-m`` as given, or ``results/<DatasetName>/<configuration>`` for ``-d``/``-c`` (or the configuration's
    one run with another recipe or plans, ``<configuration>__<recipe>__<plans>``, when it has no default run).

    Raises:
        ConfigError: Neither or both ways given, or ``-d`` without ``-c``.
        CheckpointError: No trained model for the dataset or configuration.
    """
    by_name = args.dataset is not None or args.configuration is not None
    if args.model_folder is not None:
        if by_name:
            raise ConfigError("give either -m/--model-folder or -d/--dataset with -c/--configuration, not both")
        folder = Path(args.model_folder)
    elif args.dataset is None or args.configuration is None:
        raise ConfigError("give -d/--dataset and -c/--configuration, or -m/--model-folder")
    else:
        try:
            dataset = find_raw_dataset(paths.results, args.dataset)
        except DatasetError:
            raise CheckpointError(f"no trained model for dataset '{args.dataset}'; train it first or set "
                                  "--data-root / nnUNet_results", paths.results) from None
        folder = paths.results / dataset.name / args.configuration
        if not folder.is_dir():
            # Trained with another recipe or plans only (e.g. 3d_det with the detection recipe): that run.
            runs = sorted(p for p in folder.parent.glob(f"{args.configuration}__*") if p.is_dir())
            if len(runs) > 1:
                raise ConfigError(f"configuration '{args.configuration}' has several runs ("
                                  f"{', '.join(p.name for p in runs)}); choose one with -m", folder.parent)
            folder = runs[0] if runs else folder
    if not folder.is_dir():
        raise CheckpointError("model folder not found; train this configuration first", folder)
    return folder


def postprocessing_for(args: argparse.Namespace, model_folder: Path
                       ) -> PostprocessingPlan | TaskPostprocessing | None:
    """``--postprocessing FILE``; else, unless ``--no-postprocessing``, the model folder's own
    ``postprocessing.json``, or the one ``find-best`` chose for its configuration (``../find_best/choice.json``,
    also in an exported and installed model); else ``None``. A model of several label maps has one with a plan
    per task (:class:`~autounet.postprocessing.TaskPostprocessing`).

    Raises:
        ConfigError: The file is missing or invalid.
    """
    from autounet.ensembling.find_best import chosen_postprocessing  # imports torch: not at the top

    if getattr(args, "postprocessing", None) is not None:
        path = Path(args.postprocessing)
        if not path.is_file():
            raise ConfigError("postprocessing file not found", path)
        return load_any_postprocessing(path)
    if getattr(args, "no_postprocessing", False):
        return None
    default = model_folder / POSTPROCESSING_FILE
    chosen = default if default.is_file() else chosen_postprocessing(model_folder)
    if chosen is None:
        return None
    logger.info("applying %s", chosen)
    return load_any_postprocessing(chosen)


def available_folds(model_folder: Path, checkpoint: str) -> list[int | str]:
    """Every ``fold_N`` of a model folder holding ``checkpoint``, by index (``fold_all`` is left out, as in
    nnU-Net: it saw every case and would dominate a cross-validation ensemble).

    Raises:
        CheckpointError: No fold holds the checkpoint.
    """
    folds: list[int | str] = sorted(int(p.name[5:]) for p in model_folder.glob("fold_*")
                                    if p.name[5:].isdigit() and (p / checkpoint).is_file())
    if not folds:
        raise CheckpointError(f"no fold_N folder holds {checkpoint}; finish training or pass -f/--folds",
                              model_folder)
    return folds


def _parse_folds(texts: list[str]) -> list[int | str]:
    folds: list[int | str] = []
    for text in texts:
        if text != "all" and not text.isdigit():
            raise ConfigError(f"fold must be an index (0, 1, ...) or 'all', got '{text}'")
        folds.append(text if text == "all" else int(text))
    return folds
