"""Check: autounet predicting with an nnU-Net v2 trained model agrees with ``nnUNetv2_predict`` voxel by voxel.

Usage (from the repository root, autounet installed; after ``benchmarks/learns.py`` trained nnU-Net's fold 0)::

    python benchmarks/nnunet_agreement.py [-c 2d] [-f 0] [--num-test-cases 4] [--disable-tta]
                                          [--results DIR] [--threshold 0.995]

Writes the example MR dataset with test images (the generator is deterministic, so its training cases are the
ones the model was trained on; the test cases are new), then predicts ``imagesTs`` with the same model folder
``<results>/Dataset501_ExampleMR/nnUNetTrainer__nnUNetPlans__<configuration>`` twice:

* ``nnUNetv2_predict -d 501 -c CONFIG -f FOLD -device cpu -npp 2 -nps 2`` in nnU-Net's venv;
* ``autounet predict -m MODEL_FOLDER -f FOLD`` (the folder converted on load, autounet's engine).

It prints the fraction of voxels with the same label per case and overall, and exits 1 if the overall agreement
is below the threshold (99.5%). ``benchmarks/predict.py`` reuses these steps for its timings.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from _harness import WORK, RunResult, ensure_nnunet_venv, print_table, timed_run

DATASET_ID = 501
DATASET = "Dataset501_ExampleMR"
LEARNS_RESULTS = WORK / "learns" / "mr" / "nnunet_results"
NNUNET_TRAINER_FOLDER = "nnUNetTrainer__nnUNetPlans__{configuration}"
ENDING = ".nii.gz"


@dataclass(frozen=True)
class TestImages:
    """The example dataset's test images and the nnU-Net environment pointing at them."""

    raw_root: Path  # holds <DATASET>/imagesTs
    images: Path
    cases: tuple[str, ...]


def write_test_images(work: Path, num_test_cases: int) -> TestImages:
    """Write the example MR dataset with ``num_test_cases`` test cases under ``work/data`` (kept if present)."""
    data = work / "data"
    images = data / "raw" / DATASET / "imagesTs"
    if len(list(images.glob(f"*_0000{ENDING}"))) != num_test_cases:
        command = [sys.executable, "-m", "autounet", "example", "mr", "--num-cases", "20", "--num-test-cases",
                   str(num_test_cases), "--overwrite", "--data-root", str(data), "-q"]
        work.mkdir(parents=True, exist_ok=True)
        if timed_run(command, log=work / "example.log").returncode != 0:
            raise SystemExit(f"writing the example dataset failed; see {work / 'example.log'}")
    cases = tuple(sorted(p.name[: -len(f"_0000{ENDING}")] for p in images.glob(f"*_0000{ENDING}")))
    return TestImages(data / "raw", images, cases)


def nnunet_model_folder(results: Path, configuration: str) -> Path:
    """nnU-Net's trained-model folder of the default trainer and plans."""
    return results / DATASET / NNUNET_TRAINER_FOLDER.format(configuration=configuration)


def run_nnunet(images: TestImages, results: Path, configuration: str, fold: str, mirroring: bool, out: Path,
               log: Path, processes: int = 2, extra_env: dict[str, str] | None = None) -> RunResult:
    """``nnUNetv2_predict`` on the test images into a fresh ``out``, timed (process tree peak RSS);
    ``extra_env`` is added to its environment."""
    shutil.rmtree(out, ignore_errors=True)
    preprocessed = out.parent / "nnunet_preprocessed"
    preprocessed.mkdir(parents=True, exist_ok=True)  # nnU-Net wants the variable set to a folder; unused here
    env = {"nnUNet_raw": str(images.raw_root), "nnUNet_preprocessed": str(preprocessed),
           "nnUNet_results": str(results), "nnUNet_compile": "0", **(extra_env or {})}
    command = [str(ensure_nnunet_venv() / "nnUNetv2_predict"), "-i", str(images.images), "-o", str(out),
               "-d", str(DATASET_ID), "-c", configuration, "-f", fold, "-chk", "checkpoint_final.pth",
               "-device", "cpu", "-npp", str(processes), "-nps", str(processes)]
    if not mirroring:
        command.append("--disable_tta")
    return timed_run(command, env=env, log=log)


def run_autounet(images: TestImages, model_folder: Path, fold: str, mirroring: bool, out: Path,
                 log: Path, checkpoint: str = "checkpoint_final.pt", options: Sequence[str] = (),
                 env: dict[str, str] | None = None) -> RunResult:
    """``autounet predict -m MODEL_FOLDER [options]`` on the test images into a fresh ``out``, timed (``.pt``
    names are read as ``.pth`` in an nnU-Net folder); ``env`` is added to its environment."""
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "autounet", "predict", "-m", str(model_folder), "-i", str(images.images),
               "-o", str(out), "-f", fold, "--checkpoint", checkpoint, "-q", *options]
    if not mirroring:
        command.append("--disable-tta")
    return timed_run(command, env=env, log=log)


def agreement(cases: tuple[str, ...], reference: Path, other: Path) -> list[tuple[str, int, int]]:
    """Per case: (case, voxels, voxels with the same label in both output folders)."""
    rows = []
    for case in cases:
        ref = np.asanyarray(nib.load(reference / f"{case}{ENDING}").dataobj)
        out = np.asanyarray(nib.load(other / f"{case}{ENDING}").dataobj)
        if ref.shape != out.shape:
            raise SystemExit(f"{case}: nnU-Net wrote shape {ref.shape}, autounet {out.shape}")
        rows.append((case, int(ref.size), int(np.count_nonzero(ref == out))))
    return rows


def check(result: RunResult, tool: str, log: Path) -> None:
    """Stop with the log's place when a tool failed."""
    if result.returncode != 0:
        raise SystemExit(f"{tool} failed (exit {result.returncode}); see {log}")


def main() -> int:
    """Predict with both tools, print per-case agreement, exit 1 below the threshold."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--configuration", default="2d")
    parser.add_argument("-f", "--fold", default="0")
    parser.add_argument("--num-test-cases", type=int, default=4)
    parser.add_argument("--disable-tta", action="store_true", help="no mirroring in either tool")
    parser.add_argument("--results", type=Path, default=LEARNS_RESULTS, help="nnU-Net results folder")
    parser.add_argument("--threshold", type=float, default=0.995)
    args = parser.parse_args()
    model = nnunet_model_folder(args.results, args.configuration)
    fold_folder = model / ("fold_all" if args.fold == "all" else f"fold_{args.fold}")
    if not (fold_folder / "checkpoint_final.pth").is_file():
        raise SystemExit(f"no trained nnU-Net model: {fold_folder / 'checkpoint_final.pth'} is missing; run "
                         "benchmarks/learns.py first")
    work = WORK / "agreement"
    images = write_test_images(work, args.num_test_cases)
    mirroring = not args.disable_tta
    tag = f"{args.configuration}_{'tta' if mirroring else 'notta'}"
    outputs = {tool: work / f"out_{tool}_{tag}" for tool in ("nnunetv2", "autounet")}
    logs = {tool: work / f"{tool}_{tag}.log" for tool in outputs}
    timings = {
        "nnunetv2": run_nnunet(images, args.results, args.configuration, args.fold, mirroring, outputs["nnunetv2"],
                               logs["nnunetv2"]),
        "autounet": run_autounet(images, model, args.fold, mirroring, outputs["autounet"], logs["autounet"]),
    }
    for tool, result in timings.items():
        check(result, tool, logs[tool])
    rows = agreement(images.cases, outputs["nnunetv2"], outputs["autounet"])
    total, same = sum(r[1] for r in rows), sum(r[2] for r in rows)
    table = [("case", "voxels", "same label", "agreement")]
    table += [(case, str(n), str(k), f"{100 * k / n:.3f}%") for case, n, k in rows]
    table.append(("all", str(total), str(same), f"{100 * same / total:.3f}%"))
    print(f"\nnnU-Net model {model.name}, fold {args.fold}, mirroring {'on' if mirroring else 'off'}, "
          f"{len(images.cases)} test case(s)\n")
    print_table(table)
    print("\n" + "  ".join(f"{tool}: {r.seconds:.1f} s, {r.peak_rss_mib:.0f} MiB" for tool, r in timings.items()))
    if same / total < args.threshold:
        print(f"FAIL: agreement {100 * same / total:.3f}% < {100 * args.threshold:.1f}%")
        return 1
    print(f"OK: agreement >= {100 * args.threshold:.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
