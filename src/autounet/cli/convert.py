"""``autounet convert``: turn MSD / nnU-Net v1 / nnDetection task folders, 2D picture folders and glacier
calving-front data (CaFFe, the glacier fork's stacked task folders) into raw datasets."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from autounet.cli._common import add_processes_argument, dataset_id
from autounet.dataset.convert import PICTURE_ENDINGS, convert_images, convert_msd
from autounet.dataset.description import load_dataset_json
from autounet.dataset.glacier import CAFFE_DATASET_ID, convert_caffe, convert_glacier_stacked
from autounet.dataset.nndet import convert_nndet
from autounet.errors import DatasetError
from autounet.io.jsonio import read_json
from autounet.paths import Paths

__all__ = ["register", "run"]

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    """Add the ``convert`` subcommand with its ``msd`` and ``images`` sources.

    Args:
        subparsers: The ``autounet`` subcommand collection.
        parent: Parser with the common options, accepted after the subcommand too.
    """
    parser = subparsers.add_parser(
        "convert", parents=[parent], help="convert MSD tasks or picture folders into raw datasets",
        description="Convert data into an nnU-Net v2 raw dataset (DatasetNNN_Name) in the raw-data folder. "
                    "The dataset is written beside its final place and renamed when complete.",
        epilog="Run 'autounet convert SOURCE -h' for the options of a source.")
    sources = parser.add_subparsers(dest="source", metavar="SOURCE", required=True)
    msd = sources.add_parser(
        "msd", parents=[parent], help="a Medical Segmentation Decathlon or nnU-Net v1 task folder",
        description="Convert TaskNN_Name/ (imagesTr, labelsTr, imagesTs, v1 dataset.json). 4D images are "
                    "split into one file per channel with their exact geometry; macOS '._' files are "
                    "skipped.")
    msd.add_argument("task_folder", type=Path, metavar="TASK_FOLDER", help="the TaskNN_Name folder")
    msd.add_argument("-d", "--dataset-id", type=dataset_id, default=None, metavar="ID",
                     help="number of the new dataset (default: the task number, Task05_Prostate -> 5)")
    add_processes_argument(msd)
    _add_overwrite(msd)
    msd.set_defaults(handler=run)
    nndet = sources.add_parser(
        "nndet", parents=[parent], help="an nnDetection task folder (instance labels, per-case JSON)",
        description="Convert TaskNNN_Name/ (dataset.json or .yaml, raw_splitted/) into a dataset whose label "
                    "files are instance maps with {case}.json beside them; instances are checked.")
    nndet.add_argument("task_folder", type=Path, metavar="TASK_FOLDER", help="the TaskNNN_Name folder")
    nndet.add_argument("-d", "--dataset-id", type=dataset_id, default=None, metavar="ID",
                       help="number of the new dataset (default: the task number)")
    add_processes_argument(nndet)
    _add_overwrite(nndet)
    nndet.set_defaults(handler=run)
    _add_glacier_sources(sources, parent)
    images = sources.add_parser(
        "images", parents=[parent], help="a folder of 2D pictures with a folder of label images",
        description=f"Pair pictures ({', '.join(PICTURE_ENDINGS)}) with the label images of the same "
                    "names and write them as PNG. Colour pictures stay three channels (R, G, B). Label "
                    "images with values 0/255 become 0/1; without --labels-json, labels are named "
                    "label_1, label_2, ... and non-consecutive values are renumbered.")
    images.add_argument("--images", type=Path, required=True, metavar="DIR", help="folder of pictures")
    images.add_argument("--labels", type=Path, required=True, metavar="DIR", help="folder of label images")
    images.add_argument("-d", "--dataset-id", type=dataset_id, required=True, metavar="ID",
                        help="number of the new dataset")
    images.add_argument("--name", required=True, help="short dataset name, e.g. Polyps")
    images.add_argument("--labels-json", type=Path, default=None, metavar="FILE",
                        help='label names: {"background": 0, "polyp": 1}, or a dataset.json-like object '
                             'with "labels" (and optionally "channel_names")')
    _add_overwrite(images)
    images.set_defaults(handler=run)


def _add_glacier_sources(sources: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    caffe = sources.add_parser(
        "caffe", parents=[parent], help="the CaFFe calving-front benchmark (SAR images, zones, fronts)",
        description="Convert CaFFe as published (sar_images/, zones/, fronts/, each with train/ and test/) into a "
                    "dataset with two label maps: tasks 'zones' (background = N/A and radar shadow, rock, glacier, "
                    "ocean) and 'front' (a line). Pixel sizes in metres come from the file names "
                    "(GLACIER_DATE_SENSOR_RES_...); test images go to imagesTs/ with their labels in labelsTs/.")
    caffe.add_argument("folder", type=Path, metavar="DIR", help="the CaFFe folder (data_raw/)")
    caffe.add_argument("-d", "--dataset-id", type=dataset_id, default=CAFFE_DATASET_ID, metavar="ID",
                       help="number of the new dataset (default: %(default)s)")
    add_processes_argument(caffe)
    _add_overwrite(caffe)
    caffe.set_defaults(handler=run)
    stacked = sources.add_parser(
        "glacier-stacked", parents=[parent], help="a glacier-fork task folder with stacked label maps",
        description="Convert an nnU-Net v1 task folder of the calving-front fork, whose label files hold the "
                    "front (label0) and the zones (label1) stacked along the last axis, into a dataset with one "
                    "label map per task. Pixel sizes come from the CaFFe case names.")
    stacked.add_argument("task_folder", type=Path, metavar="TASK_FOLDER", help="the TaskNNN_Name folder")
    stacked.add_argument("-d", "--dataset-id", type=dataset_id, default=None, metavar="ID",
                         help="number of the new dataset (default: the task number)")
    add_processes_argument(stacked)
    _add_overwrite(stacked)
    stacked.set_defaults(handler=run)


def _add_overwrite(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing dataset of the same name (once the new one is complete)")


def run(args: argparse.Namespace, paths: Paths) -> int:
    """Convert the source named by ``args.source`` into ``paths.raw``.

    Args:
        args: Parsed arguments of ``convert msd`` or ``convert images``.
        paths: The resolved data folders.

    Returns:
        0 on success.

    Raises:
        DatasetError: The source is malformed or the dataset exists without ``--overwrite``.
    """
    if args.source in ("msd", "nndet"):
        convert = convert_msd if args.source == "msd" else convert_nndet
        folder = convert(args.task_folder, paths.raw, dataset_id=args.dataset_id, num_processes=args.num_processes,
                         overwrite=args.overwrite)
    elif args.source == "caffe":
        folder = convert_caffe(args.folder, paths.raw, dataset_id=args.dataset_id, num_processes=args.num_processes,
                               overwrite=args.overwrite)
    elif args.source == "glacier-stacked":
        folder = convert_glacier_stacked(args.task_folder, paths.raw, dataset_id=args.dataset_id,
                                         num_processes=args.num_processes, overwrite=args.overwrite)
    else:
        labels, channel_names = _read_labels_json(args.labels_json) if args.labels_json else (None, None)
        folder = convert_images(args.images, args.labels, paths.raw, args.dataset_id, args.name, labels=labels,
                                channel_names=channel_names, overwrite=args.overwrite)
    description = load_dataset_json(folder / "dataset.json")
    dataset_id = int(folder.name.removeprefix("Dataset").split("_", 1)[0])
    labels = "; ".join(", ".join(f"{k}={v}" for k, v in task.labels.items()) if not description.has_task_folders
                       else f"{task.name} ({task.kind}): " + ", ".join(f"{k}={v}" for k, v in task.labels.items())
                       for task in description.tasks)
    logger.info("wrote %s: %d training case(s), %d channel(s), labels %s", folder, description.num_training,
                description.num_channels, labels)
    logger.info("next: autounet verify -d %d", dataset_id)
    return 0


def _read_labels_json(path: Path) -> tuple[dict[str, int], dict[int, str] | None]:
    """Label names (and channel names, if present) from ``--labels-json``."""
    data: Any = read_json(path)
    if isinstance(data, dict) and isinstance(data.get("labels"), dict):
        labels, channels = data["labels"], data.get("channel_names")
    else:
        labels, channels = data, None
    if not isinstance(labels, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in labels.values()):
        raise DatasetError('expected label names with integer values, like {"background": 0, "polyp": 1}', path)
    if channels is None:
        return dict(labels), None
    if not isinstance(channels, dict) or not all(str(k).isdecimal() and isinstance(v, str)
                                                 for k, v in channels.items()):
        raise DatasetError('"channel_names" must map indices to names, like {"0": "R"}', path)
    return dict(labels), {int(k): v for k, v in channels.items()}
