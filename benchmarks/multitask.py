"""Multi-task benchmark on the synthetic SAR glacier example (issue #12 item 8).

Five settings, each trained with the same fixed CPU budget (epochs x iterations) on fold 0, 2d:

1. ``front only``: a derived single-map dataset of the front maps (id 516); predictions thinned before MDE.
2. ``zones only``: a derived single-map dataset of the zone maps (id 526); the front is the glacier/ocean
   boundary of the predicted zones.
3. ``late branching``: the multi-task dataset (506) with the default recipe (one decoder, heads per task).
4. ``early branching``: the same with the ``early_branching`` recipe (a decoder per task).
5. ``fused labels``: a derived single-map dataset of the zones with class 4 ``front`` painted over them
   (id 536); the front is predicted class 4, thinned.

Printed: MDE mean and median (metres, the images' spacing), test images without a predicted front, and the
zone IoU per class (settings 2-5). The ``--with-nnunet`` comparison (nnU-Net v2 on the zones-only dataset)
is not implemented yet. A setting whose prediction fails reads ``predict failed``. Rerunning with the same
``--data-root`` reuses trained folds.

    python benchmarks/multitask.py --num-cases 20 --num-test-cases 6 --shape 64 64 --epochs 2 --iterations 10
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from _harness import print_table
from deploy_patch import cpu_description

from autounet.evaluation.lines import evaluate_line_folders
from autounet.evaluation.summary import evaluate_folders
from autounet.io.images import read_segmentation, write_segmentation
from autounet.postprocessing.lines import boundary_between, thin_to_line

ZONES = {"background": 0, "rock": 1, "glacier": 2, "ocean": 3}
SAR_ID = 506


def autounet(*args: str) -> None:
    """Run one ``autounet`` command in a subprocess (fails loudly)."""
    subprocess.run([sys.executable, "-m", "autounet", *args], check=True)


def derive_dataset(source: Path, target: Path, labels: dict[str, int], paint) -> None:
    """Write a single-map copy of the SAR dataset: ``paint(zones, front)`` gives each case's label map."""
    spec = json.loads((source / "dataset.json").read_text())
    shutil.copytree(source / "imagesTr", target / "imagesTr")
    shutil.copytree(source / "imagesTs", target / "imagesTs")
    for split in ("Tr", "Ts"):
        (target / f"labels{split}").mkdir(parents=True)
        for zone_file in sorted((source / f"labels{split}" / "zones").iterdir()):
            zones, geometry = read_segmentation(zone_file)
            front, _ = read_segmentation(source / f"labels{split}" / "front" / zone_file.name)
            write_segmentation(paint(zones, front).astype(np.uint8), geometry,
                               target / f"labels{split}" / zone_file.name)
    spec.pop("tasks", None)
    spec["labels"] = labels
    spec["name"] = target.name
    (target / "dataset.json").write_text(json.dumps(spec, indent=2))


def fused(zones: np.ndarray, front: np.ndarray) -> np.ndarray:
    """Zones with the front painted over them as class 4."""
    return np.where(front > 0, 4, zones)


def write_fronts(pred_dir: Path, out_dir: Path, extract) -> None:
    """Write ``extract(label map)`` of every predicted map as a 0/1 line map."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for file in sorted(pred_dir.glob("*.mha")):
        labels, geometry = read_segmentation(file)
        write_segmentation(extract(labels).astype(np.uint8), geometry, out_dir / file.name)


def keep_zones(pred_dir: Path, out_dir: Path) -> None:
    """Zone maps of fused predictions: class 4 (front) counts as glacier, the side it is drawn on."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for file in sorted(pred_dir.glob("*.mha")):
        labels, geometry = read_segmentation(file)
        write_segmentation(np.where(labels == 4, ZONES["glacier"], labels).astype(np.uint8), geometry,
                           out_dir / file.name)


def score(ref: Path, fronts: Path, zones: Path | None) -> tuple[str, ...]:
    """One table row: MDE mean, median, images without a front, zone IoU per class."""
    mde = evaluate_line_folders(ref / "front", fronts, 1).summary
    row = (f"{mde.mean:.1f}", f"{mde.median:.1f}", str(mde.no_prediction))
    if zones is None:
        return row + ("-",) * (len(ZONES) - 1)
    mean = evaluate_folders(ref / "zones", zones, labels={k: v for k, v in ZONES.items() if v}).mean
    return row + tuple(f"{mean[name]['iou']:.3f}" for name in ZONES if ZONES[name])


def main() -> None:
    """Generate the data, train and predict the five settings, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-cases", type=int, default=20)
    parser.add_argument("--num-test-cases", type=int, default=6)
    parser.add_argument("--shape", type=int, nargs=2, default=[64, 64])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--data-root", type=Path, default=None, help="default: a temporary folder")
    args = parser.parse_args()
    root = args.data_root or Path(tempfile.mkdtemp(prefix="autounet_mt_"))
    common = ["--data-root", str(root)]
    autounet("example", "sar", "--num-cases", str(args.num_cases), "--num-test-cases", str(args.num_test_cases),
             "--shape", *map(str, args.shape), "--overwrite", *common)
    raw = root / "raw"
    source = next(raw.glob(f"Dataset{SAR_ID}_*"))
    derived = {516: ("SarFront", {"background": 0, "front": 1}, lambda z, f: f),
               526: ("SarZones", ZONES, lambda z, f: z),
               536: ("SarFused", {**ZONES, "front": 4}, fused)}
    for dataset_id, (name, labels, paint) in derived.items():
        target = raw / f"Dataset{dataset_id}_{name}"
        shutil.rmtree(target, ignore_errors=True)
        derive_dataset(source, target, labels, paint)
    budget = ["--epochs", str(args.epochs), "--iterations-per-epoch", str(args.iterations),
              "--validation-iterations", "2", "--num-workers", "0"]
    runs = {"front only": (516, "default"), "zones only": (526, "default"), "late branching": (SAR_ID, "default"),
            "early branching": (SAR_ID, "early_branching"), "fused labels": (536, "default")}
    for dataset_id in (516, 526, 536, SAR_ID):
        autounet("plan-and-preprocess", "-d", str(dataset_id), "-c", "2d", *common)
    names = {SAR_ID: source.name.split("_", 1)[1], **{k: v[0] for k, v in derived.items()}}
    out = root / "predictions"
    rows = [("setting", "MDE mean", "MDE median", "no front", "IoU rock", "IoU glacier", "IoU ocean")]
    for setting, (dataset_id, recipe) in runs.items():
        folder = "2d" if recipe == "default" else f"2d__{recipe}__plans"
        model = root / "results" / f"Dataset{dataset_id}_{names[dataset_id]}" / folder
        if not (model / "fold_0" / "checkpoint_final.pt").is_file():  # a rerun on the same --data-root reuses it
            autounet("train", "-d", str(dataset_id), "-c", "2d", "-f", "0", "--recipe", recipe, *budget, *common)
        pred = out / setting.replace(" ", "_")
        shutil.rmtree(pred, ignore_errors=True)
        try:
            autounet("predict", "-m", str(model), "-f", "0", "-i", str(source / "imagesTs"), "-o", str(pred),
                     "--disable-tta", *common)
        except subprocess.CalledProcessError:
            rows.append((setting, "predict failed", *("-",) * 5))
            continue
        fronts, zones = pred / "_fronts", None
        if dataset_id == SAR_ID:
            fronts, zones = pred / "front", pred / "zones"
        elif dataset_id == 516:
            write_fronts(pred, fronts, lambda m: thin_to_line(m == 1))
        elif dataset_id == 526:
            write_fronts(pred, fronts, lambda m: boundary_between(m, inside=2, outside=3))
            zones = pred
        else:
            write_fronts(pred, fronts, lambda m: thin_to_line(m == 4))
            zones = pred / "_zones"
            keep_zones(pred, zones)
        rows.append((setting, *score(source / "labelsTs", fronts, zones)))
    print(f"CPU: {cpu_description()}")
    print(f"budget: {args.epochs} epochs x {args.iterations} iterations, fold 0, 2d; {args.num_cases} training + "
          f"{args.num_test_cases} test cases of {args.shape[0]} x {args.shape[1]}")
    print_table(rows)


if __name__ == "__main__":
    main()
