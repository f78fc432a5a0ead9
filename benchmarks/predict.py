"""Benchmark: prediction on CPU, autounet vs ``nnUNetv2_predict``: seconds per case and peak RSS.

Usage (from the repository root, autounet installed; after ``benchmarks/learns.py`` trained fold 0 with both
tools)::

    python benchmarks/predict.py [-c 2d] [--num-test-cases 4] [--explore]

Same images (the example MR dataset's ``imagesTs``, see ``benchmarks/nnunet_agreement.py``), same settings
(step 0.5, Gaussian weighting, fold 0, CPU), with and without mirroring, one run each:

* an nnU-Net model (``benchmarks/_work/learns/mr/nnunet_results/.../nnUNetTrainer__nnUNetPlans__<c>``):
  ``nnUNetv2_predict -device cpu -npp 2 -nps 2`` vs ``autounet predict -m MODEL_FOLDER`` (converted on load);
  the agreement column is the fraction of voxels with the same label in both outputs;
* an autounet model (``benchmarks/_work/learns/mr/autounet/results/Dataset501_ExampleMR/<c>``): only autounet,
  since nnU-Net cannot load autounet's checkpoints.

Times are wall-clock for the whole command (start-up, model loading, reading and writing included) divided by
the number of cases; peak RSS is that of the whole process tree (nnU-Net's worker processes included).
``--explore`` adds autounet rows through the Python API: with the glibc allocator tuned
(``tune_cpu_allocator``) and with several windows per network call (``PredictionSettings.batch_size``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from _harness import WORK, RunResult, print_table, timed_run
from cpu_step_variants import cpu_description
from nnunet_agreement import (
    DATASET,
    LEARNS_RESULTS,
    TestImages,
    agreement,
    check,
    nnunet_model_folder,
    run_autounet,
    run_nnunet,
    write_test_images,
)

AUTOUNET_RESULTS = WORK / "learns" / "mr" / "autounet" / "results"
# The Python API with the options the CLI does not expose; argv: folder images out fold mirroring batch tune.
_API_RUNNER = """
import sys
from autounet.inference import PredictionSettings, Predictor, tune_cpu_allocator
folder, images, out, fold, mirroring, batch, tune = sys.argv[1:8]
if tune == "1":
    tune_cpu_allocator()
settings = PredictionSettings(use_mirroring=mirroring == "1", batch_size=int(batch), show_progress=False)
fold = fold if fold == "all" else int(fold)
Predictor.from_model_folder(folder, [fold], "checkpoint_final.pt", "cpu", settings).predict_folder(images, out)
"""


def run_api(images: TestImages, model_folder: Path, mirroring: bool, batch_size: int, tune: bool, out: Path,
            log: Path) -> RunResult:
    """autounet through the Python API with a batch size and optionally the tuned allocator, timed."""
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-c", _API_RUNNER, str(model_folder), str(images.images), str(out), "0",
               "1" if mirroring else "0", str(batch_size), "1" if tune else "0"]
    return timed_run(command, log=log)


def _row(model: str, mirroring: bool, tool: str, result: RunResult | None, cases: int,
         reference: RunResult | None, agree: str = "") -> tuple[str, ...]:
    if result is None:
        return (model, "on" if mirroring else "off", tool, "n/a", "n/a", "n/a", "", "", agree)
    ratios = ("", "")
    if reference is not None and reference is not result:
        ratios = (f"{result.seconds / reference.seconds:.2f}x", f"{result.peak_rss_mib / reference.peak_rss_mib:.2f}x")
    return (model, "on" if mirroring else "off", tool, f"{result.seconds / cases:.1f}", f"{result.seconds:.1f}",
            f"{result.peak_rss_mib:.0f}", *ratios, agree)


def _nnunet_model_rows(images: TestImages, results: Path, configuration: str, mirroring: bool, work: Path,
                       explore: bool) -> tuple[list[tuple[str, ...]], RunResult]:
    """nnunetv2 and autounet on the nnU-Net model, plus the optional API variants; and nnunetv2's run."""
    model = nnunet_model_folder(results, configuration)
    tag = f"{configuration}_{'tta' if mirroring else 'notta'}"
    outs = {name: work / f"out_{name}_{tag}" for name in ("nnunetv2",)}
    logs = {name: work / f"{name}_{tag}.log" for name in outs}
    reference = run_nnunet(images, results, configuration, "0", mirroring, outs["nnunetv2"], logs["nnunetv2"])
    check(reference, "nnUNetv2_predict", logs["nnunetv2"])
    label, n = "nnU-Net model", len(images.cases)
    rows = [_row(label, mirroring, "nnunetv2", reference, n, None)]
    # autounet's default, then torch.compile forced on from the first window and off (issue 14, item 11).
    for name, extra in (("autounet", ()), ("autounet --compile", ("--compile",)),
                        ("autounet --no-compile", ("--no-compile",))):
        out, log = work / f"out_{name.replace(' ', '_')}_{tag}", work / f"{name.replace(' ', '_')}_{tag}.log"
        ours = run_autounet(images, model, "0", mirroring, out, log, options=extra)
        check(ours, name, log)
        counts = agreement(images.cases, outs["nnunetv2"], out)
        agree = f"{100 * sum(c[2] for c in counts) / sum(c[1] for c in counts):.3f}%"
        rows.append(_row(label, mirroring, name, ours, n, reference, agree))
    if explore:
        for batch, tune in ((1, True), (4, False), (4, True)):
            name = f"autounet API batch {batch}{', tuned malloc' if tune else ''}"
            out, log = work / f"out_api_{batch}_{int(tune)}_{tag}", work / f"api_{batch}_{int(tune)}_{tag}.log"
            result = run_api(images, model, mirroring, batch, tune, out, log)
            check(result, name, log)
            rows.append(_row(label, mirroring, name, result, n, reference))
    return rows, reference


def _autounet_model_rows(images: TestImages, model: Path, mirroring: bool, work: Path, reference: RunResult,
                         checkpoint: str) -> list[tuple[str, ...]]:
    """autounet on a model autounet trained (ratios against nnunetv2 on its own model); nnU-Net cannot run it."""
    label, n = "autounet model", len(images.cases)
    rows = [_row(label, mirroring, "nnunetv2", None, n, None, "cannot load autounet checkpoints")]
    if not (model / "fold_0" / checkpoint).is_file():
        rows.append(_row(label, mirroring, "autounet", None, n, None, f"not trained: {model}/fold_0"))
        return rows
    tag = f"{model.name}_{'tta' if mirroring else 'notta'}"
    out, log = work / f"out_autounet_own_{tag}", work / f"autounet_own_{tag}.log"
    result = run_autounet(images, model, "0", mirroring, out, log, checkpoint)
    check(result, "autounet predict (own model)", log)
    rows.append(_row(label, mirroring, "autounet", result, n, reference))
    return rows


def main() -> int:
    """Run every tool and setting once and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--configuration", default="2d")
    parser.add_argument("--num-test-cases", type=int, default=4)
    parser.add_argument("--explore", action="store_true", help="also time autounet API variants")
    parser.add_argument("--nnunet-results", type=Path, default=LEARNS_RESULTS, help="nnU-Net results folder")
    parser.add_argument("--autounet-results", type=Path, default=AUTOUNET_RESULTS, help="autounet results folder")
    parser.add_argument("--autounet-checkpoint", default="checkpoint_final.pt",
                        help="checkpoint of the autounet model (default: %(default)s)")
    args = parser.parse_args()
    if not (nnunet_model_folder(args.nnunet_results, args.configuration) / "fold_0" / "checkpoint_final.pth").is_file():
        raise SystemExit("no trained nnU-Net model; run benchmarks/learns.py first")
    work = WORK / "predict"
    images = write_test_images(WORK / "agreement", args.num_test_cases)
    header = ("model", "mirroring", "tool", "s/case", "total s", "peak RSS MiB", "time vs nnunetv2",
              "RSS vs nnunetv2", "agreement / note")
    rows: list[tuple[str, ...]] = [header]
    for mirroring in (True, False):
        nnunet_rows, reference = _nnunet_model_rows(images, args.nnunet_results, args.configuration, mirroring, work,
                                                    args.explore)
        rows += nnunet_rows
        rows += _autounet_model_rows(images, args.autounet_results / DATASET / args.configuration, mirroring, work,
                                     reference, args.autounet_checkpoint)
    print(f"\nCPU: {cpu_description()}")
    print(f"Prediction, configuration {args.configuration}, fold 0, {len(images.cases)} test case(s) of the "
          "example MR dataset, CPU; times include start-up and I/O\n")
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
