"""Benchmark (issue 13): the Retina U-Net against the segmentation-to-boxes baseline on nnDetection's toy
problem, at one fixed CPU budget.

Usage (from the repository root, autounet installed)::

    python benchmarks/detection.py [--epochs 40] [--iterations 25] [--full]

Writes the toy dataset (``autounet example detection``, 60 training + 40 test cases of 32^3 by default: enough
test objects of each class that one hard case does not decide a class's AP; ``--full`` for nnDetection's size),
plans and preprocesses it once, then trains fold 0 twice with the same number of
epochs x iterations:

* ``3d_det`` with the ``detection`` recipe (Retina U-Net: class segmentation head as class evidence, inference
  parameters swept on the fold's validation cases after training), predicted with ``autounet predict`` (box
  files, with the swept parameters);
* ``3d_fullres`` with the default recipe (segmentation of the semantic map), predicted with
  ``--save-probabilities`` and turned into boxes with ``autounet seg-to-boxes`` (each connected component a box
  scored by its highest probability): nnDetection's "nnU-Net as a detector" baseline.

Both are scored with ``autounet evaluate`` on the test cases (AP at IoU 0.1, per class, FROC score). The table
gives them with seconds per training iteration (median of the epochs' times over the iterations, validation
included) and seconds per predicted test case (mirroring on). nnDetection itself cannot be installed here (a compiled
C++/CUDA extension and PyTorch 1.x); its published expectation on the toy problem is near-perfect AP.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _harness import WORK, print_table
from cpu_step_variants import cpu_description

AUTOUNET = [sys.executable, "-m", "autounet"]


def run(arguments: list[str], root: Path) -> float:
    """Run an autounet command quietly; return its wall-clock seconds."""
    start = time.perf_counter()
    subprocess.run([*AUTOUNET, *arguments, "--data-root", str(root), "-q"], check=True)
    return time.perf_counter() - start


def seconds_per_iteration(fold: Path, iterations: int) -> float:
    """Median epoch time over the iterations of an epoch, from the run's ``metrics.json``."""
    history = json.loads((fold / "metrics.json").read_text())
    return statistics.median(history["epoch_seconds"]) / iterations


def scores(summary_file: Path) -> tuple[float, str, float, float]:
    """AP at IoU 0.1, the per-class APs (``/``-separated, by class), mAP over IoU 0.1:0.5 and FROC score from
    ``detection_summary.json``."""
    summary = json.loads(summary_file.read_text())
    per_class = "/".join(f"{(values['AP_IoU_0.10'] or 0.0):.2f}"
                         for _, values in sorted(summary["per_class"].items(), key=lambda item: int(item[0])))
    return (summary["AP_IoU_0.10_MaxDet_100"] or 0.0, per_class,
            summary["mAP_IoU_0.10_0.50_0.05_MaxDet_100"] or 0.0, summary["FROC_score_IoU_0.10"] or 0.0)


def swept(fold: Path) -> str:
    """The detector's validation AP (plan defaults -> swept) and the parameters the sweep changed."""
    path = fold / "detection_inference.json"
    if not path.is_file():
        return "-"
    chosen = json.loads(path.read_text())
    return f"validation AP@0.1 {chosen['ap_default']:.3f} -> {chosen['ap_swept']:.3f} on {chosen['num_cases']} " \
           f"cases; parameters {chosen['parameters']}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--iterations", type=int, default=25, help="training iterations per epoch")
    parser.add_argument("--full", action="store_true", help="nnDetection's toy size instead of the small one")
    parser.add_argument("--num-cases", type=int, default=60, help="training cases of the small toy")
    parser.add_argument("--num-test-cases", type=int, default=40, help="test cases of the small toy")
    parser.add_argument("--work", type=Path, default=WORK / "detection")
    args = parser.parse_args()
    root = args.work
    raw = root / "raw" / "Dataset505_ExampleDetection"
    if not raw.is_dir():
        size = ["--full"] if args.full else ["--num-cases", str(args.num_cases), "--num-test-cases",
                                             str(args.num_test_cases)]
        run(["example", "detection", *size], root)
        run(["plan-and-preprocess", "-d", "505"], root)
    budget = ["--epochs", str(args.epochs), "--iterations-per-epoch", str(args.iterations),
              "--validation-iterations", "4"]
    results = root / "results" / "Dataset505_ExampleDetection"
    rows = [("model", "AP@0.1", "AP per class", "mAP 0.1:0.5", "FROC score", "s / train iteration",
             "s / test case")]
    notes = []
    settings = (("Retina U-Net (3d_det)", ["-c", "3d_det", "--recipe", "detection"], "3d_det__detection__plans"),
                ("segmentation -> boxes (3d_fullres)", ["-c", "3d_fullres"], "3d_fullres"))
    for label, choice, run_folder in settings:
        fold = results / run_folder / "fold_0"
        if not (fold / "checkpoint_final.pt").is_file():
            run(["train", "-d", "505", *choice, "-f", "0", *budget], root)
        output = root / f"predicted_{run_folder}"
        tests = sorted((raw / "imagesTs").glob("*_0000.nii.gz"))
        extra = [] if "3d_det" in run_folder else ["--save-probabilities"]
        seconds = run(["predict", "-m", str(results / run_folder), "-f", "0", "-i", str(raw / "imagesTs"), "-o",
                       str(output), "--overwrite", *extra], root)
        if extra:
            run(["seg-to-boxes", str(output)], root)
        run(["evaluate", str(raw / "labelsTs"), str(output), "--boxes"], root)
        ap, per_class, mean_ap, froc = scores(output / "detection_summary.json")
        notes.append(f"{label}: {swept(fold)}")
        rows.append((label, f"{ap:.3f}", per_class, f"{mean_ap:.3f}", f"{froc:.3f}",
                     f"{seconds_per_iteration(fold, args.iterations):.3f}", f"{seconds / len(tests):.2f}"))
    print(f"CPU: {cpu_description()}")
    print(f"budget: fold 0, {args.epochs} epochs x {args.iterations} iterations each; "
          f"{'full' if args.full else 'small'} toy, {len(tests)} test cases; mirroring on at prediction")
    print_table(rows)
    for note in notes:
        print(note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
