"""``autounet seg-to-boxes``: scored boxes from a segmentation model's saved probabilities (the "nnU-Net as a
detector" baseline), written as box files that ``evaluate --boxes`` scores like a detector's."""

from __future__ import annotations

import argparse
from pathlib import Path

from autounet.cli._common import output_folder, positive_int
from autounet.errors import DatasetError
from autounet.paths import Paths

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    """Add the ``seg-to-boxes`` subcommand.

    Args:
        subparsers: The ``autounet`` subcommand collection.
        parent: Parser with the common options, accepted after the subcommand too.
    """
    parser = subparsers.add_parser(
        "seg-to-boxes", parents=[parent], help="boxes from saved segmentation probabilities (detection baseline)",
        description="For every <case>.npz in PRED_DIR (from 'predict --save-probabilities' of any segmentation "
                    "model, autounet's or an imported nnU-Net v2 one), turn each connected component of each "
                    "predicted label into a box of class label - 1, scored by the label's probability inside "
                    "it, and write <case>_boxes.json with world coordinates from <case><ending>.")
    parser.add_argument("prediction_dir", type=Path, metavar="PRED_DIR",
                        help="prediction folder holding <case>.npz and <case><ending>")
    parser.add_argument("-o", "--output", type=output_folder, default=None, metavar="DIR",
                        help="where the box files go (default: PRED_DIR)")
    parser.add_argument("--min-voxels", type=positive_int, default=1, metavar="N",
                        help="drop components of fewer voxels (default: %(default)s)")
    parser.add_argument("--score", choices=("max", "mean"), default="max",
                        help="component score: highest or mean probability of its label (default: %(default)s)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, paths: Paths | None = None) -> int:
    """Write a box file for every case with saved probabilities.

    Args:
        args: Parsed arguments of :func:`register`.
        paths: The resolved data folders (unused: the folder is given explicitly).

    Returns:
        0 on success.

    Raises:
        DatasetError: No probabilities in the folder, or a case without its label map.
    """
    # Imported here: building the parser (`autounet -h`) must not import torch.
    from autounet.dataset.description import load_dataset_json
    from autounet.detection.box_files import box_file_name, boxes_in_world, write_boxes_json
    from autounet.detection.from_segmentation import segmentation_to_boxes
    from autounet.ensembling.average import load_probabilities
    from autounet.io.images import read_segmentation, split_ending
    from autounet.progress import progress

    folder = Path(args.prediction_dir)
    cases = sorted(folder.glob("*.npz")) if folder.is_dir() else []
    if not cases:
        raise DatasetError("no <case>.npz probabilities here; predict with --save-probabilities", folder)
    output = args.output or folder
    names: dict[int, str] = {}
    if (folder / "dataset.json").is_file():  # predict writes the model's: class c is label value c + 1
        description = load_dataset_json(folder / "dataset.json")
        names = {value - 1: name for name, value in description.labels.items() if isinstance(value, int) and value}
    label_maps = {split_ending(p.name)[0]: p for p in folder.iterdir()  # type: ignore[index]
                  if p.is_file() and split_ending(p.name) is not None}
    for npz in progress(cases, "Boxes from segmentations", total=len(cases)):
        case_id = npz.stem
        if case_id not in label_maps:
            raise DatasetError(f"no label map of case '{case_id}' beside its probabilities (its geometry is "
                               "needed)", npz)
        _, geometry = read_segmentation(label_maps[case_id])
        boxes, scores, classes = segmentation_to_boxes(load_probabilities(npz), args.min_voxels, args.score)
        write_boxes_json(output / box_file_name(case_id),
                         boxes_in_world(boxes.numpy(), scores.numpy(), classes.numpy(), geometry), names,
                         source=f"segmentation {folder}")
    print(f"{len(cases)} box file(s) written to {output}")
    return 0
