"""``autounet ensemble``: average the saved probabilities of several prediction folders."""

from __future__ import annotations

import argparse
from pathlib import Path

from autounet.cli._common import output_dir
from autounet.dataset.description import load_dataset_json
from autounet.ensembling import ensemble_folders
from autounet.errors import ConfigError
from autounet.paths import Paths
from autounet.postprocessing import load_postprocessing

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    """Add the ``ensemble`` subcommand.

    Args:
        subparsers: The ``autounet`` subcommand collection.
        parent: Parser with the common options, accepted after the subcommand too.
    """
    parser = subparsers.add_parser(
        "ensemble", parents=[parent], help="average the probabilities of several prediction folders",
        description="Average <case>.npz probabilities (written by 'predict --save-probabilities') of every case "
                    "over the input folders, turn them into label maps (argmax, or regions thresholded at 0.5) "
                    "with the geometry of the first folder's <case><ending>, optionally postprocess. Cases "
                    "already written are skipped, so an interrupted run resumes when started again.")
    parser.add_argument("-i", "--input", required=True, nargs="+", type=Path, metavar="DIR",
                        help="prediction folders holding <case>.npz (the first also <case><ending>)")
    parser.add_argument("-o", "--output", required=True, type=output_dir, metavar="DIR", help="folder for the ensemble")
    parser.add_argument("-j", "--dataset-json", type=Path, default=None, metavar="FILE",
                        help="dataset.json of the models (labels or regions, file ending); default: the "
                             "dataset.json in the first input folder")
    parser.add_argument("--postprocessing", type=Path, default=None, metavar="FILE",
                        help="postprocessing.json to apply (from 'autounet find-best')")
    parser.add_argument("--save-probabilities", action="store_true",
                        help="also write the averaged <case>.npz probabilities")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, paths: Paths | None = None) -> int:
    """Ensemble ``args.input`` into ``args.output``.

    Args:
        args: Parsed arguments of :func:`register`.
        paths: The resolved data folders (unused: every folder is given explicitly).

    Returns:
        0 on success.

    Raises:
        ConfigError: No dataset.json to be found, an output folder among the inputs, a bad postprocessing file.
        DatasetError: A folder, case or file is missing or unusable.
    """
    inputs = [Path(d) for d in args.input]
    output = Path(args.output)
    if any(d.resolve() == output.resolve() for d in inputs):
        raise ConfigError("the output folder must differ from every input folder", output)
    dataset_json = args.dataset_json or inputs[0] / "dataset.json"
    if args.dataset_json is None and not dataset_json.is_file():
        raise ConfigError("no dataset.json in the first input folder; give the models' dataset.json with "
                          "-j/--dataset-json", inputs[0])
    description = load_dataset_json(dataset_json)
    plan = load_postprocessing(args.postprocessing) if args.postprocessing is not None else None
    outputs = ensemble_folders(inputs, output, description, plan, args.save_probabilities,
                               show_progress=not getattr(args, "quiet", False))
    print(f"ensembled: {len(outputs)} case(s) of {len(inputs)} folder(s) in {output}")
    return 0
