"""``autounet deploy``: a trained model as ONNX graphs (float32 or INT8) that ``predict -m`` runs on the CPU."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from autounet.cli._common import output_folder, positive_int
from autounet.cli.predict import add_model_arguments, available_folds, model_folder_for
from autounet.errors import ConfigError
from autounet.paths import Paths, configuration_of_run_folder

if TYPE_CHECKING:
    import numpy as np

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    """Add the ``deploy`` subcommand."""
    parser = subparsers.add_parser(
        "deploy", parents=[parent], help="export a trained model to ONNX (float32 or INT8) for CPU prediction",
        description="Write a self-contained deployed model folder: one ONNX graph per fold (deep supervision off, "
                    "batch and spatial axes dynamic), plans.json, dataset.json, postprocessing.json and deploy.json "
                    "with the SHA-256 of every file. 'autounet predict -m OUT' runs it with ONNX Runtime (float32) "
                    "or OpenVINO (INT8) and the same preprocessing, sliding window, mirroring, fold averaging, "
                    "postprocessing and output geometry as the torch model. Needs the 'deploy' extra.")
    add_model_arguments(parser)
    parser.add_argument("-o", "--output", required=True, type=output_folder, metavar="DIR",
                        help="the deployed model folder to create (must not exist)")
    parser.add_argument("--precision", choices=("fp32", "int8"), default="fp32",
                        help="fp32 (default), or int8: static post-training quantization (NNCF), calibrated on "
                             "patches of the preprocessed training cases (needs -d/-c)")
    parser.add_argument("--calibration-patches", type=positive_int, default=32, metavar="N",
                        help="patches drawn for INT8 calibration, as training draws them (default: %(default)s)")
    parser.add_argument("--checkpoint", default="checkpoint_final.pt", metavar="NAME")
    parser.add_argument("--torchscript", action="store_true",
                        help="export with the TorchScript exporter (seconds) instead of dynamo (tens of seconds)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, paths: Paths) -> int:
    """Deploy the model."""
    # Imported here, not at the top: building the parser (`autounet -h`) must not import torch (seconds).
    from autounet.deploy.model_folder import deploy_model
    from autounet.inference.nnunet_model import is_nnunet_model_folder, nnunet_checkpoint_name

    model_folder = model_folder_for(args, paths)
    checkpoint = nnunet_checkpoint_name(args.checkpoint) if is_nnunet_model_folder(model_folder) else args.checkpoint
    folds = [f if f == "all" else int(f) for f in args.folds] if args.folds else available_folds(model_folder,
                                                                                                checkpoint)
    calibration = _calibration(args, paths, model_folder) if args.precision == "int8" else None
    manifest = deploy_model(model_folder, args.output, folds, checkpoint, args.precision, calibration,
                            dynamo=not args.torchscript)
    print(f"deployed: {args.output} ({manifest.precision}, folds {', '.join(manifest.folds)}); predict with "
          f"'autounet predict -i INPUT -o OUTPUT -m {args.output}'")
    return 0


def _calibration(args: argparse.Namespace, paths: Paths, model_folder: Path) -> np.ndarray:
    """Calibration patches from the configuration's preprocessed training cases."""
    from autounet.deploy.calibration import draw_calibration_patches
    from autounet.planning.plans import load_plans
    from autounet.preprocessing.storage import case_finished

    if args.dataset is None:
        raise ConfigError("--precision int8 calibrates on the preprocessed training data: give -d/-c, not -m")
    plans = load_plans(model_folder / "plans.json")
    configuration = plans.configuration(configuration_of_run_folder(model_folder.name))
    data_folder = paths.preprocessed / model_folder.parent.name / configuration.data_identifier
    cases = sorted(p.stem for p in data_folder.glob("*.json") if case_finished(data_folder, p.stem))
    if not cases:
        raise ConfigError("no preprocessed cases to calibrate on; run 'autounet preprocess' first", data_folder)
    images, _ = draw_calibration_patches(data_folder, cases, tuple(configuration.patch_size),
                                         args.calibration_patches, batch_size=configuration.batch_size)
    return images
