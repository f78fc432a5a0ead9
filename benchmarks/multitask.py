"""Multi-task benchmark on the synthetic SAR glacier example (issue #12 item 8).

The seed's five settings, each trained with the same fixed CPU budget (epochs x iterations) on fold 0, 2d:

1. ``front only``: a single-map copy of the front maps (id 516); predictions thinned before MDE.
2. ``zones only``: a single-map copy of the zone maps (id 526); the front is the boundary that the SAR
   dataset's ``dataset.json`` declares for it (glacier next to ocean) in the predicted zones.
3. ``late branching``: the multi-task dataset (506) with the default recipe (one decoder, heads per task); a
   second row takes its front from its predicted zones (``predict --line-source boundary``).
4. ``early branching``: the same with the ``early_branching`` recipe (a decoder per task).
5. ``fused labels``: configuration ``2d_fused`` of 506, the plans' ``2d`` with a label derivation that paints
   the front (widened to 5 px, as the seed did) into the zones as class 4; preprocessing computes the fused
   maps, prediction splits them back into ``zones/`` and ``front/`` (class 4 as glacier).

With ``--with-nnunet``, the zones-only dataset is also trained with nnU-Net v2 (``nnUNetTrainer``, same epochs,
iterations and validation iterations, fold 0, 2d) in its own venv (``benchmarks/_work/nnunet_venv``), predicts
the test images (no TTA, as autounet here) and its front is extracted from its zones the same way.

Printed: MDE mean and median (metres, the images' spacing), test images without a predicted front, and the
zone IoU per class. A setting whose prediction fails reads ``predict failed``. Rerunning with the same
``--data-root`` reuses trained folds.

    python benchmarks/multitask.py --num-cases 20 --num-test-cases 6 --shape 64 64 --epochs 2 --iterations 10
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from _harness import ensure_nnunet_venv, print_table
from cpu_step_variants import cpu_description

from autounet.dataset import load_dataset_json
from autounet.dataset.description import DatasetDescription
from autounet.evaluation.lines import evaluate_line_folders
from autounet.evaluation.summary import evaluate_folders
from autounet.io.images import read_segmentation, write_segmentation
from autounet.postprocessing.lines import boundary_between, thin_to_line

SAR_ID = 506
DRIVER = Path(__file__).resolve().parent / "_nnunet_driver.py"
FUSED = {"fused_lines": [{"line": "front", "into": "zones", "restore": "glacier", "width": 5}]}
HEADER = ("setting", "MDE mean", "MDE median", "no front", "IoU rock", "IoU glacier", "IoU ocean")


def autounet(*args: str) -> None:
    """Run one ``autounet`` command in a subprocess (fails loudly)."""
    subprocess.run([sys.executable, "-m", "autounet", *args], check=True)


def derive_dataset(source: Path, target: Path, task: str) -> None:
    """Write a single-map copy of the SAR dataset holding only ``task``'s maps (as its ``labels``)."""
    spec = json.loads((source / "dataset.json").read_text())
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source / "imagesTr", target / "imagesTr")
    shutil.copytree(source / "imagesTs", target / "imagesTs")
    for split in ("Tr", "Ts"):
        shutil.copytree(source / f"labels{split}" / task, target / f"labels{split}")
    spec["labels"] = spec.pop("tasks")[task]["labels"]
    spec["name"] = target.name
    (target / "dataset.json").write_text(json.dumps(spec, indent=2))


def front_from_zones(description: DatasetDescription):  # noqa: ANN201 - a label map -> mask function
    """The front as the SAR dataset declares it: the boundary between labels of the zone map."""
    zones, front = description.tasks
    if front.boundary is None:
        raise SystemExit("the SAR dataset.json declares no boundary for its front task")
    inside, outside = front.boundary.values(zones)
    return lambda labels: boundary_between(labels, inside, outside)


def write_fronts(pred_dir: Path, out_dir: Path, extract) -> None:  # noqa: ANN001
    """Write ``extract(label map)`` of every predicted map as a 0/1 line map."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for file in sorted(pred_dir.glob("*.mha")):
        labels, geometry = read_segmentation(file)
        write_segmentation(extract(labels).astype(np.uint8), geometry, out_dir / file.name)


def score(ref: Path, fronts: Path, zones: Path | None, zone_labels: dict[str, int]) -> tuple[str, ...]:
    """One table row: MDE mean, median, images without a front, zone IoU per class."""
    mde = evaluate_line_folders(ref / "front", fronts, 1).summary
    row = (f"{mde.mean:.1f}", f"{mde.median:.1f}", str(mde.no_prediction))
    if zones is None:
        return row + ("-",) * (len(zone_labels) - 1)
    labels = {k: v for k, v in zone_labels.items() if v}
    mean = evaluate_folders(ref / "zones", zones, labels=labels).mean
    return row + tuple(f"{mean[name]['iou']:.3f}" for name in labels)


def add_fused_configuration(preprocessed: Path) -> None:
    """Add ``2d_fused`` (the plans' ``2d`` with the fused-label derivation) to the SAR dataset's plans."""
    plans_file = preprocessed / "plans.json"
    plans = json.loads(plans_file.read_text())
    plans["configurations"]["2d_fused"] = {"inherits_from": "2d", "label_derivation": FUSED}
    plans_file.write_text(json.dumps(plans, indent=2))


def nnunet_zones(root: Path, dataset: Path, budget: tuple[int, int, int]) -> Path:
    """Train nnU-Net v2 on the zones-only dataset (2d, fold 0, the budget) and predict its test images.

    Returns:
        The folder of predicted zone maps.
    """
    bin_dir = ensure_nnunet_venv()
    dataset_id = dataset.name[len("Dataset"):].split("_")[0]
    env = {**os.environ, "nnUNet_raw": str(dataset.parent), "nnUNet_preprocessed": str(root / "nnunet_preprocessed"),
           "nnUNet_results": str(root / "nnunet_results"), "nnUNet_compile": "0", "nnUNet_n_proc_DA": "2",
           "nnUNet_def_n_proc": "2"}
    out = root / "predictions" / "nnunet_zones"
    record = root / "nnunet_results" / "multitask_train.json"
    if not record.is_file():
        subprocess.run([str(bin_dir / "nnUNetv2_plan_and_preprocess"), "-d", dataset_id, "-c", "2d", "-np", "2",
                        "-npfp", "2"], env=env, check=True)
        epochs, iterations, val_iterations = budget
        done = subprocess.run([str(bin_dir / "python"), str(DRIVER), "train", dataset_id, "2d", "--epochs",
                               str(epochs), "--iterations", str(iterations), "--val-iterations", str(val_iterations),
                               "--threads", str(os.cpu_count() or 1)], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"nnU-Net training failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        record.write_text(done.stdout.splitlines()[-1])
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run([str(bin_dir / "nnUNetv2_predict"), "-i", str(dataset / "imagesTs"), "-o", str(out), "-d",
                    dataset_id, "-c", "2d", "-f", "0", "--disable_tta", "-device", "cpu", "-npp", "1", "-nps", "1"],
                   env=env, check=True)
    return out


def autounet_rows(root: Path, source: Path, names: dict[int, str], budget: list[str],
                  zone_labels: dict[str, int]) -> list[tuple[str, ...]]:
    """Train (unless done), predict and score every autounet setting; one table row each."""
    common = ["--data-root", str(root)]
    description = load_dataset_json(source / "dataset.json")
    # setting -> (dataset, configuration, recipe, predict options)
    runs = {"front only": (516, "2d", "default", ()), "zones only": (526, "2d", "default", ()),
            "late branching": (SAR_ID, "2d", "default", ()),
            "late branching, front from zones": (SAR_ID, "2d", "default", ("--line-source", "boundary")),
            "early branching": (SAR_ID, "2d", "early_branching", ()),
            "fused labels": (SAR_ID, "2d_fused", "default", ())}
    rows = []
    for setting, (dataset_id, configuration, recipe, options) in runs.items():
        folder = configuration if recipe == "default" else f"{configuration}__{recipe}__plans"
        model = root / "results" / f"Dataset{dataset_id}_{names[dataset_id]}" / folder
        if not (model / "fold_0" / "checkpoint_final.pt").is_file():  # a rerun on the same --data-root reuses it
            autounet("train", "-d", str(dataset_id), "-c", configuration, "-f", "0", "--recipe", recipe, *budget,
                     *common)
        pred = root / "predictions" / setting.replace(" ", "_").replace(",", "")
        shutil.rmtree(pred, ignore_errors=True)
        try:
            autounet("predict", "-m", str(model), "-f", "0", "-i", str(source / "imagesTs"), "-o", str(pred),
                     "--disable-tta", *options, *common)
        except subprocess.CalledProcessError:
            rows.append((setting, "predict failed", *("-",) * 5))
            continue
        fronts, zones = pred / "front", pred / "zones"
        if dataset_id == 516:
            fronts, zones = pred / "_fronts", None
            write_fronts(pred, fronts, lambda m: thin_to_line(m == 1))
        elif dataset_id == 526:
            fronts, zones = pred / "_fronts", pred
            write_fronts(pred, fronts, front_from_zones(description))
        rows.append((setting, *score(source / "labelsTs", fronts, zones, zone_labels)))
    return rows


def main() -> None:
    """Generate the data, train and predict the settings, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-cases", type=int, default=20)
    parser.add_argument("--num-test-cases", type=int, default=6)
    parser.add_argument("--shape", type=int, nargs=2, default=[64, 64])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--validation-iterations", type=int, default=2)
    parser.add_argument("--with-nnunet", action="store_true", help="also train nnU-Net v2 on the zones-only dataset")
    parser.add_argument("--data-root", type=Path, default=None, help="default: a temporary folder")
    args = parser.parse_args()
    root = args.data_root or Path(tempfile.mkdtemp(prefix="autounet_mt_"))
    common = ["--data-root", str(root)]
    autounet("example", "sar", "--num-cases", str(args.num_cases), "--num-test-cases", str(args.num_test_cases),
             "--shape", *map(str, args.shape), "--overwrite", *common)
    raw = root / "raw"
    source = next(raw.glob(f"Dataset{SAR_ID}_*"))
    description = load_dataset_json(source / "dataset.json")
    zone_labels = {k: int(v) for k, v in description.tasks[0].labels.items()}  # type: ignore[arg-type]
    derived = {516: ("SarFront", "front"), 526: ("SarZones", "zones")}
    for dataset_id, (name, task) in derived.items():
        derive_dataset(source, raw / f"Dataset{dataset_id}_{name}", task)
    budget = ["--epochs", str(args.epochs), "--iterations-per-epoch", str(args.iterations),
              "--validation-iterations", str(args.validation_iterations), "--num-workers", "0"]
    for dataset_id in (516, 526, SAR_ID):
        autounet("plan-and-preprocess", "-d", str(dataset_id), "-c", "2d", *common)
    add_fused_configuration(root / "preprocessed" / source.name)
    autounet("preprocess", "-d", str(SAR_ID), "-c", "2d_fused", *common)
    names = {SAR_ID: source.name.split("_", 1)[1], **{k: v[0] for k, v in derived.items()}}
    rows = [HEADER, *autounet_rows(root, source, names, budget, zone_labels)]
    if args.with_nnunet:
        epochs_iterations = (args.epochs, args.iterations, args.validation_iterations)
        pred = nnunet_zones(root, raw / f"Dataset526_{names[526]}", epochs_iterations)
        write_fronts(pred, pred / "_fronts", front_from_zones(description))
        rows.append(("zones only, nnU-Net v2", *score(source / "labelsTs", pred / "_fronts", pred, zone_labels)))
    print(f"CPU: {cpu_description()}")
    print(f"budget: {args.epochs} epochs x {args.iterations} iterations ({args.validation_iterations} validation), "
          f"fold 0, 2d; {args.num_cases} training + {args.num_test_cases} test cases of {args.shape[0]} x "
          f"{args.shape[1]}")
    print_table(rows)


if __name__ == "__main__":
    main()
