"""``autounet predict``: segment a folder of images with a trained configuration."""

from __future__ import annotations

import argparse
from pathlib import Path

from autounet.dataset.raw import find_raw_dataset
from autounet.errors import CheckpointError, ConfigError, DatasetError
from autounet.inference.predictor import PredictionSettings, Predictor
from autounet.paths import Paths

__all__ = ["available_folds", "model_folder_for", "register", "run"]


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    """Add the ``predict`` subcommand."""
    parser = subparsers.add_parser(
        "predict", parents=[parent], help="segment a folder of images with a trained model",
        description="Segment every <case>_NNNN<ending> case of a folder with the folds of a trained configuration "
                    "(logits averaged over folds). Outputs keep the input geometry exactly; cases whose output "
                    "exists are skipped, so an interrupted run resumes when started again.")
    parser.add_argument("-i", "--input", required=True, type=Path, metavar="DIR", help="folder of input images")
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="DIR", help="folder for segmentations")
    parser.add_argument("-d", "--dataset", metavar="ID", help="dataset id, folder name or short name (with -c)")
    parser.add_argument("-c", "--configuration", help="2d, 3d_fullres, ... (with -d)")
    parser.add_argument("-m", "--model-folder", type=Path, metavar="DIR",
                        help="results/<Dataset>/<configuration> folder (instead of -d/-c)")
    parser.add_argument("-f", "--folds", nargs="+", metavar="FOLD",
                        help="folds to ensemble, indices or 'all' (default: every fold_N with the checkpoint)")
    parser.add_argument("--step-size", type=float, default=0.5, help="window step as a patch fraction (0.5)")
    parser.add_argument("--disable-tta", action="store_true", help="no mirroring test-time augmentation (faster)")
    parser.add_argument("--save-probabilities", action="store_true", help="also write <case>.npz probabilities")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps (default: cpu)")
    parser.add_argument("--checkpoint", default="checkpoint_final.pt", metavar="NAME",
                        help="checkpoint file in each fold folder (default: %(default)s)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, paths: Paths) -> int:
    """Predict every case of ``args.input`` into ``args.output``."""
    model_folder = model_folder_for(args, paths)
    folds = _parse_folds(args.folds) if args.folds else available_folds(model_folder, args.checkpoint)
    settings = PredictionSettings(step_size=args.step_size, use_mirroring=not args.disable_tta,
                                  save_probabilities=args.save_probabilities,
                                  show_progress=not getattr(args, "quiet", False))
    predictor = Predictor.from_model_folder(model_folder, folds, args.checkpoint, args.device, settings)
    outputs = predictor.predict_folder(args.input, args.output)
    print(f"predicted: {len(outputs)} case(s) in {args.output}")
    return 0


def model_folder_for(args: argparse.Namespace, paths: Paths) -> Path:
    """``-m`` as given, or ``results/<DatasetName>/<configuration>`` for ``-d``/``-c``.

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
        raise CheckpointError("model folder not found; train this configuration first", folder)
    return folder


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
