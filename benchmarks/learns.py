"""Benchmark: does autounet learn as well as nnU-Net v2 at equal iterations? Validation Dice of fold 0 on CPU.

Usage (from the repository root, autounet installed)::

    python benchmarks/learns.py [--kind mr] [-c 2d 3d_fullres] [--budget 2d=10,50,10] [--reuse]
                                [--tools autounet nnunetv2] [--repeats N]

Writes the example dataset and plans + preprocesses it with both tools (as ``benchmarks/dataloader.py``), then
trains fold 0 of each configuration with the same budget (epochs x iterations per epoch, and validation batches
per epoch) with both tools on the CPU, each followed by its own full sliding-window validation of the fold's
validation cases, and prints the mean validation Dice per label:

* autounet: ``autounet train -d ID -c CONFIG -f 0 --epochs E --iterations-per-epoch I --validation-iterations V``
  (its defaults: 2 loader threads, bf16 mixed precision on CPUs with native bf16);
* nnU-Net: the default ``nnUNetTrainer`` with ``num_epochs``, ``num_iterations_per_epoch`` and
  ``num_val_iterations_per_epoch`` set (``benchmarks/_nnunet_driver.py train``), ``nnUNet_n_proc_DA=2``.

Both tools plan the same configurations and use the same split (nnU-Net's KFold with seed 12345). Training is
randomised differently in each tool, so single-fold Dice values differ by chance as well as by method: with so
short a budget, when a small structure starts to be segmented varies by several epochs between runs.
``--repeats N`` trains every configuration N times with each tool (autounet with seeds 12345, 12346, ...; nnU-Net
is not seedable, each run draws anew) and adds a row with the mean per tool; repeat r > 0 writes to
``autounet_r<r>/results`` and ``nnunet_results_r<r>``, so repeat 0 stays where the other benchmarks read it.
``--reuse`` keeps the prepared data and any finished run of a tool (its summary is read again).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

from _harness import WORK, print_table, timed_run
from dataloader import IDS, Prepared, prepare, run_driver

# configuration -> (epochs, iterations per epoch, validation iterations per epoch); sized so that nnU-Net's run
# (fp32 on 2 CPU cores) stays within about 15 minutes on the default MR example.
BUDGETS = {"2d": (10, 50, 10), "3d_fullres": (6, 25, 5)}
DEFAULT_SEED = 12345  # autounet's default training seed (TrainingRecipe.seed)


def _prepared(kind: str, reuse: bool) -> Prepared:
    root = WORK / "learns" / kind
    data = root / "autounet"
    dataset_id = IDS[kind]
    if reuse and (root / "nnunet_preprocessed").is_dir() and (data / "preprocessed").is_dir():
        env = {"nnUNet_raw": str(data / "raw"), "nnUNet_preprocessed": str(root / "nnunet_preprocessed"),
               "nnUNet_results": str(root / "nnunet_results"), "nnUNet_compile": "0"}
        return Prepared(dataset_id, next((data / "raw").glob(f"Dataset{dataset_id:03d}_*")),
                        next((data / "preprocessed").glob(f"Dataset{dataset_id:03d}_*")), env)
    return prepare("learns", kind, 20, None, 2)


def _autounet(prepared: Prepared, configuration: str, budget: tuple[int, int, int], reuse: bool,
              repeat: int = 0) -> dict:
    data = prepared.raw.parent.parent
    command_options: list[str] = []
    if repeat:
        # a data root of its own for the results, sharing the raw and preprocessed data of repeat 0
        shared, data = data, data.parent / f"autounet_r{repeat}"
        data.mkdir(exist_ok=True)
        for name in ("raw", "preprocessed"):
            if not (data / name).exists():
                (data / name).symlink_to(shared / name, target_is_directory=True)
        command_options = ["--seed", str(DEFAULT_SEED + repeat)]
    folder = data / "results" / prepared.raw.name / configuration / "fold_0"
    summary_file = folder / "validation" / "summary.json"
    record = folder.parent / "learns_run.json"
    if not (reuse and summary_file.is_file() and record.is_file()):
        epochs, iterations, val_iterations = budget
        command = [sys.executable, "-m", "autounet", "train", "-d", str(prepared.dataset_id), "-c", configuration,
                   "-f", "0", "--epochs", str(epochs), "--iterations-per-epoch", str(iterations),
                   "--validation-iterations", str(val_iterations), "--data-root", str(data), "-q", *command_options]
        if folder.exists():
            shutil.rmtree(folder)
        log = WORK / "learns" / f"autounet_{configuration}{f'_r{repeat}' if repeat else ''}.log"
        run = timed_run(command, log=log)
        if run.returncode != 0:
            raise SystemExit(f"autounet train failed; see {log}")
        record.write_text(json.dumps({"seconds": run.seconds}))
    summary = json.loads(summary_file.read_text())
    return {"dice": summary["mean"], "foreground_mean_dice": summary["foreground_mean_dice"],
            "seconds": json.loads(record.read_text())["seconds"]}


def _nnunet(prepared: Prepared, configuration: str, budget: tuple[int, int, int], reuse: bool,
            repeat: int = 0) -> dict:
    if repeat:
        results = Path(prepared.nnunet_env["nnUNet_results"])
        prepared = replace(prepared, nnunet_env={**prepared.nnunet_env,
                                                 "nnUNet_results": str(results.parent / f"{results.name}_r{repeat}")})
    record = Path(prepared.nnunet_env["nnUNet_results"]) / f"learns_{configuration}.json"
    if reuse and record.is_file():
        return json.loads(record.read_text())
    epochs, iterations, val_iterations = budget
    start = time.perf_counter()
    result = run_driver(prepared, "train", configuration,
                        ["--epochs", str(epochs), "--iterations", str(iterations), "--val-iterations",
                         str(val_iterations), "--threads", str(os.cpu_count() or 1)],
                        {"nnUNet_n_proc_DA": "2", "nnUNet_def_n_proc": "2"})
    result["seconds"] = time.perf_counter() - start
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(result))
    return result


def _budget(text: str) -> tuple[str, tuple[int, int, int]]:
    name, _, numbers = text.partition("=")
    values = tuple(int(v) for v in numbers.split(","))
    if name not in BUDGETS or len(values) != 3:
        raise argparse.ArgumentTypeError("expected CONFIG=EPOCHS,ITERATIONS,VAL_ITERATIONS, e.g. 2d=10,50,10")
    return name, values  # type: ignore[return-value]


def main() -> int:
    """Train both tools and print the Dice table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", default="mr", choices=sorted(IDS))
    parser.add_argument("-c", "--configurations", nargs="+", default=["2d", "3d_fullres"], choices=sorted(BUDGETS))
    parser.add_argument("--budget", type=_budget, action="append", default=[],
                        help="override a budget: CONFIG=EPOCHS,ITERATIONS,VAL_ITERATIONS")
    parser.add_argument("--tools", nargs="+", default=["nnunetv2", "autounet"], choices=["nnunetv2", "autounet"])
    parser.add_argument("--reuse", action="store_true", help="keep prepared data and finished runs")
    parser.add_argument("--repeats", type=int, default=1, help="runs per tool and configuration (see above)")
    args = parser.parse_args()
    budgets = {**BUDGETS, **dict(args.budget)}

    prepared = _prepared(args.kind, args.reuse)
    runners = {"nnunetv2": _nnunet, "autounet": _autounet}
    results = {(c, tool): [runners[tool](prepared, c, budgets[c], args.reuse, repeat)
                           for repeat in range(args.repeats)]
               for c in args.configurations for tool in args.tools}
    labels = sorted({label for runs in results.values() for r in runs for label in r["dice"]}, key=int)
    rows = [("configuration", "tool", "run", "epochs x iterations", "minutes", *(f"Dice {x}" for x in labels),
             "mean")]
    for (configuration, tool), runs in results.items():
        epochs, iterations, _ = budgets[configuration]
        for repeat, result in enumerate(runs):
            run = f"seed {DEFAULT_SEED + repeat}" if tool == "autounet" else f"run {repeat + 1}"
            rows.append((configuration, tool, run, f"{epochs} x {iterations}", f"{result['seconds'] / 60:.1f}",
                         *(f"{result['dice'][x]:.4f}" for x in labels), f"{result['foreground_mean_dice']:.4f}"))
        if len(runs) > 1:
            rows.append((configuration, tool, f"mean of {len(runs)}", f"{epochs} x {iterations}",
                         f"{statistics.mean(r['seconds'] for r in runs) / 60:.1f}",
                         *(f"{statistics.mean(r['dice'][x] for r in runs):.4f}" for x in labels),
                         f"{statistics.mean(r['foreground_mean_dice'] for r in runs):.4f}"))
    print(f"\nDataset: example '{args.kind}', fold 0 validation cases (full sliding window, mirroring); minutes = "
          "training + final validation wall time\n")
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
