"""``autounet deploy``: a trained model as ONNX graphs (float32 or INT8) that ``predict -m`` runs on the CPU."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from autounet.cli._common import batch_count, output_folder, percentage_points, positive_int
from autounet.cli.predict import add_model_arguments, available_folds, model_folder_for
from autounet.dataset.raw import find_raw_dataset
from autounet.errors import ConfigError
from autounet.paths import Paths, configuration_of_run_folder

if TYPE_CHECKING:
    import numpy as np

    from autounet.deploy.accuracy import CheckedDeployer, ValidationCase
    from autounet.planning.plans import ConfigurationPlan
    from autounet.training.splits import Fold

__all__ = ["register", "run"]

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    """Add the ``deploy`` subcommand."""
    parser = subparsers.add_parser(
        "deploy", parents=[parent], help="export a trained model to ONNX (float32 or INT8) for CPU prediction",
        description="Write a self-contained deployed model folder: one ONNX graph per fold (deep supervision off, "
                    "batch and spatial axes dynamic), plans.json, dataset.json, postprocessing.json and deploy.json "
                    "with the SHA-256 of every file. 'autounet predict -m OUT' runs it with ONNX Runtime (float32) "
                    "or OpenVINO (INT8) and the same preprocessing, sliding window, mirroring, fold averaging, "
                    "postprocessing and output geometry as the torch model. A cascade stage is deployed with its "
                    "previous stage in OUT/previous_stage/, and predict runs the whole cascade. Needs the 'deploy' "
                    "extra.")
    add_model_arguments(parser)
    parser.add_argument("-o", "--output", required=True, type=output_folder, metavar="DIR",
                        help="the deployed model folder to create (must not exist)")
    parser.add_argument("--precision", choices=("fp32", "int8"), default="fp32",
                        help="fp32 (default), or int8: static post-training quantization (NNCF), calibrated on "
                             "patches of the preprocessed training cases (needs -d/-c; for an nnU-Net model folder "
                             "up to 16 raw training cases of the dataset of -d or the folder's parent are "
                             "preprocessed with its plans)")
    parser.add_argument("--calibration-patches", type=batch_count, default=32, metavar="N",
                        help="patches drawn for INT8 calibration, as training draws them (default: %(default)s)")
    parser.add_argument("--checkpoint", default="checkpoint_final.pt", metavar="NAME")
    parser.add_argument("--torchscript", action="store_true",
                        help="export with the TorchScript exporter (seconds) instead of dynamo (tens of seconds)")
    check = parser.add_argument_group(
        "accuracy check", "Each fold's graph predicts that fold's cross-validation cases, and so does its float "
        "network; Dice per class is compared. INT8 falls back step by step to keeping more layers in float "
        "until the drop is within the limits, or the deployment is refused. The report is written as "
        "deploy_report.json into the deployed folder and printed.")
    check.add_argument("--max-mean-drop", type=percentage_points, default=0.5, metavar="POINTS",
                       help="largest mean Dice drop over classes, in Dice points (default: %(default)s = 0.005 Dice)")
    check.add_argument("--max-class-drop", type=percentage_points, default=1.0, metavar="POINTS",
                       help="largest Dice drop of any class, in Dice points (default: %(default)s)")
    check.add_argument("--check-disable-tta", action="store_true",
                       help="predict the check without mirroring (faster; predict still mirrors)")
    check.add_argument("--check-max-cases", type=positive_int, default=None, metavar="N",
                       help="check on at most N validation cases per fold (default: all)")
    check.add_argument("--no-accuracy-check", action="store_true",
                       help="deploy without comparing Dice (needed for int8 when no labelled data is found)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, paths: Paths) -> int:
    """Deploy the model."""
    # Imported here, not at the top: building the parser (`autounet -h`) must not import torch (seconds).
    from autounet.deploy import DeployError
    from autounet.deploy.model_folder import deploy_model
    from autounet.inference.nnunet_model import is_nnunet_model_folder, nnunet_checkpoint_name

    # With -m, -d (without -c) names the dataset whose split and labels the check uses.
    check_dataset = args.dataset if args.model_folder is not None and args.configuration is None else None
    model_folder = model_folder_for(argparse.Namespace(**{**vars(args), "dataset": None}) if check_dataset
                                    else args, paths)
    dataset_name = _dataset_name(paths, check_dataset, model_folder)
    checkpoint = nnunet_checkpoint_name(args.checkpoint) if is_nnunet_model_folder(model_folder) else args.checkpoint
    folds = [f if f == "all" else int(f) for f in args.folds] if args.folds else available_folds(model_folder,
                                                                                                checkpoint)
    # -d/-c: results/<Dataset>/<run folder>, whose preprocessed data lie in preprocessed/<Dataset>.
    preprocessed_name = dataset_name or (model_folder.resolve().parent.name if args.model_folder is None else None)
    validation, split = _validation(args, paths, model_folder, dataset_name, folds)
    if args.precision == "fp32":
        calibration = None
    elif is_nnunet_model_folder(model_folder):
        calibration = _nnunet_calibration(args, paths, model_folder, dataset_name, folds, checkpoint)
    else:
        calibration = _calibration(args, paths, model_folder, preprocessed_name)
    deployer = _deployer(args, validation, split, calibration)
    try:
        manifest = deploy_model(model_folder, args.output, folds, checkpoint, args.precision, calibration,
                                dynamo=not args.torchscript, deployer=deployer,
                                postprocessing=_postprocessing(model_folder))
    except DeployError:
        _print_report(deployer)
        raise
    _print_report(deployer)
    print(f"deployed: {args.output} ({manifest.precision}, folds {', '.join(manifest.folds)}); predict with "
          f"'autounet predict -i INPUT -o OUTPUT -m {args.output}'")
    return 0


def _print_report(deployer: object) -> None:
    """Print the check's report; for a cascade, the previous stage's first (it was deployed first)."""
    from autounet.deploy.report import format_report

    previous = getattr(deployer, "previous", None)
    if previous is not None:
        _print_report(previous)
    report = getattr(deployer, "report", None)
    if report is not None:
        print(format_report(report))


def _dataset_name(paths: Paths, spec: str | None, model_folder: Path) -> str | None:
    """The raw dataset folder name of the check: ``spec`` (``-d`` with ``-m``), else the model folder's parent
    (``results/<Dataset>/<run folder>``) when ``raw/`` has a dataset of that name; else ``None``.

    Raises:
        DatasetError: ``spec`` names no raw dataset.
    """
    if spec is not None:
        return find_raw_dataset(paths.raw, spec).name
    parent = model_folder.resolve().parent.name
    return parent if (paths.raw / parent / "dataset.json").is_file() else None


def _validation(args: argparse.Namespace, paths: Paths, model_folder: Path, dataset_name: str | None,
                folds: list[int | str]) -> tuple[dict[str, tuple[ValidationCase, ...]] | None, str]:
    """The check's cases per fold (``None`` when not checking) and where the split came from.

    Raises:
        ConfigError: INT8 without labelled data and without ``--no-accuracy-check``.
    """
    if args.no_accuracy_check:
        return None, ""
    validation, split = _validation_cases(paths, model_folder, dataset_name, folds, args.check_max_cases)
    if validation is None and args.precision == "int8":
        raise ConfigError(f"no labelled validation data for the INT8 accuracy check ({split}); give the dataset "
                          "with -d, or pass --no-accuracy-check to deploy unchecked")
    if validation is None:
        logger.info("fp32: accuracy check skipped (%s)", split)
    return validation, split


def _deployer(args: argparse.Namespace, validation: dict[str, tuple[ValidationCase, ...]] | None, split: str,
              calibration: np.ndarray | dict[str, np.ndarray] | None) -> CheckedDeployer | None:
    """The accuracy-checked deployer; ``None`` for fp32 without validation data (a plain export)."""
    from autounet.deploy.accuracy import AccuracyGate, CheckedDeployer, CheckSettings

    if validation is None and args.precision == "fp32":
        return None
    gate = AccuracyGate(max_mean_drop=args.max_mean_drop / 100, max_class_drop=args.max_class_drop / 100)
    return CheckedDeployer(CheckSettings(precision=args.precision, output=Path(args.output), validation=validation,
                                         gate=gate, calibration=calibration, use_mirroring=not args.check_disable_tta,
                                         split=split, show_progress=not getattr(args, "quiet", False)))


def _validation_cases(paths: Paths, model_folder: Path, dataset_name: str | None, folds: list[int | str],
                      max_cases: int | None) -> tuple[dict[str, tuple[ValidationCase, ...]] | None, str]:
    """Each fold's labelled validation cases and where the split came from (:func:`_splits`); ``(None, why)``
    when there are none."""
    from autounet.dataset.raw import load_raw_dataset
    from autounet.deploy.accuracy import ValidationCase
    from autounet.training.splits import fold_cases

    if dataset_name is None:
        return None, f"no raw dataset named by -d or by the model folder's parent in {paths.raw}"
    dataset = load_raw_dataset(paths.raw / dataset_name)
    cases = {case.case_id: case for case in dataset.cases if case.label_file is not None}
    ids = sorted(cases)
    splits, split, split_file = _splits(paths, model_folder, dataset_name, ids)
    if splits is None:
        return None, f"no split file and fewer than 5 labelled cases in {dataset.root}"
    validation = {}
    for fold in folds:
        chosen = fold_cases(splits, fold, ids, source=split_file).val[:max_cases]
        validation[str(fold)] = tuple(ValidationCase(c, cases[c].image_files, cases[c].label_file) for c in chosen)
    return validation, split


def _postprocessing(model_folder: Path) -> Path | None:
    """What ``predict`` would apply: the model folder's own ``postprocessing.json``, else the one ``find-best``
    chose for this configuration alone (``../find_best/choice.json``), else none."""
    from autounet.ensembling.find_best import chosen_postprocessing

    own = model_folder / "postprocessing.json"
    return own if own.is_file() else chosen_postprocessing(model_folder)


def _splits(paths: Paths, model_folder: Path, dataset_name: str, ids: list[str],
            ) -> tuple[list[Fold] | None, str, Path | None]:
    """The cross-validation split over the labelled cases ``ids``, where it came from, and its file.

    The split is the first of ``splits.json`` / ``splits_final.json`` in the model folder, then in
    ``preprocessed/<Dataset>/``; without one, the default 5-fold split (the one autounet and nnU-Net create);
    ``None`` when there is no file and fewer than 5 cases.
    """
    from autounet.training.splits import load_or_create_splits, make_splits

    candidates = [folder / name for folder in (model_folder, paths.preprocessed / dataset_name)
                  for name in ("splits.json", "splits_final.json")]
    split_file = next((path for path in candidates if path.is_file()), None)
    if split_file is not None:
        return load_or_create_splits(split_file, ids), str(split_file), split_file
    if len(ids) >= 5:
        return make_splits(ids), f"the default 5-fold split of {dataset_name} (no split file found)", None
    return None, "no split file", None


def _calibration(args: argparse.Namespace, paths: Paths, model_folder: Path,
                 dataset_name: str | None) -> np.ndarray | dict[str, np.ndarray]:
    """Calibration patches from the configuration's preprocessed training cases; for a cascade stage, a mapping
    with each stage's by configuration name (the cascade stage's with the previous stage's one-hot channels)."""
    from autounet.dataset.description import load_dataset_json
    from autounet.paths import sibling_run_folder
    from autounet.planning.plans import load_plans
    from autounet.training.validation import next_stage_folder

    if dataset_name is None:
        raise ConfigError("--precision int8 calibrates on the preprocessed training data: give -d/-c (or -d with -m)")
    plans = load_plans(model_folder / "plans.json")
    configuration = plans.configuration(configuration_of_run_folder(model_folder.name))
    if configuration.previous_stage is None:
        return _stage_calibration(args, paths.preprocessed / dataset_name, configuration, None, ())
    foreground = load_dataset_json(model_folder / "dataset.json").foreground_labels
    patches: dict[str, np.ndarray] = {}
    folder = model_folder
    while configuration.previous_stage is not None:
        previous_folder = sibling_run_folder(folder, configuration.name, configuration.previous_stage)
        predictions = next_stage_folder(previous_folder, configuration.name)
        patches[configuration.name] = _stage_calibration(args, paths.preprocessed / dataset_name, configuration,
                                                         predictions, foreground)
        folder, configuration = previous_folder, plans.configuration(configuration.previous_stage)
    patches[configuration.name] = _stage_calibration(args, paths.preprocessed / dataset_name, configuration, None, ())
    return patches


def _stage_calibration(args: argparse.Namespace, preprocessed: Path, configuration: ConfigurationPlan,
                       predictions: Path | None, foreground_labels: tuple[int, ...]) -> np.ndarray:
    """One stage's calibration patches; ``predictions``: a cascade stage's previous-stage predictions.

    Raises:
        ConfigError: No preprocessed cases (for a cascade stage: none with a previous-stage prediction).
    """
    from autounet.deploy.calibration import draw_calibration_patches
    from autounet.preprocessing.storage import case_finished

    data_folder = preprocessed / configuration.data_identifier
    cases = sorted(p.stem for p in data_folder.glob("*.json") if case_finished(data_folder, p.stem))
    if not cases:
        raise ConfigError("no preprocessed cases to calibrate on; run 'autounet preprocess' first", data_folder)
    if predictions is not None:
        cases = [case for case in cases if (predictions / f"{case}.npy").is_file()]
        if not cases:
            raise ConfigError(f"INT8 calibration of cascade stage '{configuration.name}' needs its previous stage's "
                              f"cross-validation predictions; train every fold of '{configuration.previous_stage}' "
                              "first", predictions)
    images, _ = draw_calibration_patches(data_folder, cases, tuple(configuration.patch_size),
                                         args.calibration_patches, batch_size=configuration.batch_size,
                                         previous_stage_folder=predictions, foreground_labels=foreground_labels)
    return images


def _nnunet_calibration(args: argparse.Namespace, paths: Paths, model_folder: Path, dataset_name: str | None,
                        folds: list[int | str], checkpoint: str) -> np.ndarray:
    """Calibration patches of an nnU-Net v2 model folder, which comes without autounet's preprocessed data.

    The calibration cases are the union of the deployed folds' training cases (the split as in the accuracy
    check, :func:`_splits`; fold ``all``: every labelled case); at most
    :data:`~autounet.deploy.calibration.MAX_CALIBRATION_CASES` of them are preprocessed with the model's own
    plans (:func:`~autounet.deploy.calibration.draw_raw_calibration_patches`). With several folds, one fold's
    validation cases may be among them, as autounet's own models calibrate on every preprocessed case: they set
    activation ranges only.

    Raises:
        ConfigError: No raw dataset found, or no labelled training cases in it.
    """
    from autounet.dataset.raw import load_raw_dataset
    from autounet.deploy.calibration import draw_raw_calibration_patches
    from autounet.inference.model_folder import load_model_folder
    from autounet.training.splits import fold_cases

    if dataset_name is None:
        raise ConfigError(f"INT8 calibration of an nnU-Net model folder preprocesses its raw training cases, but "
                          f"neither -d nor the folder's parent names a dataset in {paths.raw}; give it with -d ID",
                          model_folder)
    dataset = load_raw_dataset(paths.raw / dataset_name)
    ids = sorted(case.case_id for case in dataset.cases if case.label_file is not None)
    splits, split, split_file = _splits(paths, model_folder, dataset_name, ids) if ids else (None, "", None)
    if splits is None and any(fold != "all" for fold in folds):
        training: set[str] = set()
    else:
        training = {c for fold in folds for c in fold_cases(splits or [], fold, ids, source=split_file).train}
    if not training:
        raise ConfigError(f"no labelled training cases of folds {', '.join(map(str, folds))} to calibrate on "
                          f"({len(ids)} labelled case(s), {split or 'no split file'}); give the dataset the model was "
                          "trained on with -d ID, or put its splits_final.json into the model folder", dataset.root)
    model = load_model_folder(model_folder, folds[:1], checkpoint)
    images, _ = draw_raw_calibration_patches(dataset, sorted(training), model.plans, model.configuration.name,
                                             args.calibration_patches)
    return images
