"""Benchmark: augmented training batches per second, autounet vs nnU-Net v2, same data, same CPU workers.

Usage (from the repository root, autounet installed)::

    python benchmarks/dataloader.py [--kind mr] [--num-cases 20] [--shape 32 160 160] [-w 2]
                                    [-c 3d_fullres 2d] [--batches 30] [--warmup 8]

Writes the example dataset, plans and preprocesses it with both tools (``autounet plan-and-preprocess`` and
``nnUNetv2_plan_and_preprocess -c 3d_fullres 2d``), then, per configuration and fold 0, times ``--batches``
training batches after ``--warmup`` (more than nnU-Net's 6 cached batches, so that only steady-state
production is timed):

* nnU-Net: ``nnUNetTrainer(device=cpu).get_dataloaders()``, i.e. nnUNetDataLoader + its training transforms in a
  NonDetMultiThreadedAugmenter with ``nnUNet_n_proc_DA = workers`` processes (run by
  ``benchmarks/_nnunet_driver.py`` inside nnU-Net's venv);
* autounet: ``BatchLoader(num_workers=workers, augment=BatchAugmenter(cpu))``, i.e. sampling and augmentation in
  ``workers`` threads (each running torch on one thread, as nnU-Net's worker processes are single-threaded), as
  autounet trains on the CPU, with ``torch.set_num_threads(workers)`` in the main process like nnU-Net's side
  and glibc malloc tuned as ``autounet train`` does (``tune_cpu_allocator``; nnU-Net leaves it at its defaults);
  the main thread only does what the trainer does with a finished batch (``torch.from_numpy``, labels to int64).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from _harness import WORK, ensure_nnunet_venv, print_table, timed_run

IDS = {"mr": 501, "ct": 502, "multichannel": 503}
DRIVER = Path(__file__).resolve().parent / "_nnunet_driver.py"


@dataclass(frozen=True)
class Prepared:
    """Where both tools' preprocessed copies of one example dataset are."""

    dataset_id: int
    raw: Path
    autounet_preprocessed: Path  # preprocessed/<DatasetName>
    nnunet_env: dict[str, str]


def prepare(bench: str, kind: str, num_cases: int, shape: list[int] | None, processes: int) -> Prepared:
    """Write the example dataset and plan + preprocess it (3d_fullres, 2d) with both tools, from scratch."""
    nnunet_bin = ensure_nnunet_venv()
    root = WORK / bench / kind
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    data = root / "autounet"
    example = [sys.executable, "-m", "autounet", "example", kind, "--num-cases", str(num_cases),
               "--num-test-cases", "0", "--overwrite", "--data-root", str(data), "-q"]
    if shape:
        example += ["--shape", *map(str, shape)]
    if timed_run(example, log=root / "example.log").returncode != 0:
        raise SystemExit(f"writing the example dataset failed; see {root / 'example.log'}")
    dataset_id, np_ = IDS[kind], str(processes)
    env = {"nnUNet_raw": str(data / "raw"), "nnUNet_preprocessed": str(root / "nnunet_preprocessed"),
           "nnUNet_results": str(root / "nnunet_results"), "nnUNet_compile": "0"}
    commands = {
        "autounet": [sys.executable, "-m", "autounet", "plan-and-preprocess", "-d", str(dataset_id), "-np", np_,
                     "--data-root", str(data)],
        "nnunetv2": [str(nnunet_bin / "nnUNetv2_plan_and_preprocess"), "-d", str(dataset_id), "-np", np_, "-npfp",
                     np_, "-c", "3d_fullres", "2d"],
    }
    for tool, command in commands.items():
        log = root / f"{tool}_preprocess.log"
        if timed_run(command, env=env if tool == "nnunetv2" else {}, log=log).returncode != 0:
            raise SystemExit(f"{tool} plan-and-preprocess failed; see {log}")
    folder = next((data / "preprocessed").glob(f"Dataset{dataset_id:03d}_*"))
    return Prepared(dataset_id, next((data / "raw").glob(f"Dataset{dataset_id:03d}_*")), folder, env)


def run_driver(prepared: Prepared, mode: str, configuration: str, options: list[str], env: dict[str, str]) -> dict:
    """Run ``_nnunet_driver.py`` in nnU-Net's venv; return its result dict."""
    python = ensure_nnunet_venv() / "python"
    command = [str(python), str(DRIVER), mode, str(prepared.dataset_id), configuration, *options]
    done = subprocess.run(command, env={**os.environ, **prepared.nnunet_env, **env}, capture_output=True,
                          text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        log = WORK / f"nnunet_driver_{mode}_{configuration}.log"
        log.write_text(done.stdout + "\n" + done.stderr)
        raise SystemExit(f"nnU-Net driver ({mode}, {configuration}) failed; see {log}")
    return json.loads(lines[-1][len("RESULT "):])


def fold0_cases(prepared: Prepared) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Training and validation cases of fold 0 (autounet's split file, same split as nnU-Net's)."""
    from autounet.dataset.raw import load_raw_dataset
    from autounet.training.splits import fold_cases, load_or_create_splits

    case_ids = [c.case_id for c in load_raw_dataset(prepared.raw).cases]
    path = prepared.autounet_preprocessed / "splits.json"
    fold = fold_cases(load_or_create_splits(path, case_ids), 0, case_ids, source=path)
    return tuple(fold.train), tuple(fold.val)


def autounet_loader(prepared: Prepared, configuration: str, workers: int, batches: int,
                    warmup: int) -> tuple[float, tuple[int, ...]]:
    """Batches/s of autounet's training input pipeline built as ``training/run.py`` builds it on the CPU."""
    import torch

    from autounet.data.augmentation import BatchAugmenter, default_augmentation
    from autounet.data.loader import BatchLoader
    from autounet.data.sampler import PatchSampler, SamplerSettings
    from autounet.inference.cpu_memory import tune_cpu_allocator
    from autounet.planning.plans import load_plans
    from autounet.training.recipe import TrainingRecipe

    torch.set_num_threads(workers)
    tune_cpu_allocator()  # as `autounet train` does at start-up
    plan = load_plans(prepared.autounet_preprocessed / "plans.json").configuration(configuration)
    recipe = TrainingRecipe()
    masked = tuple(i for i, n in enumerate(plan.normalization) if n.use_nonzero_mask)
    augmentation = replace(default_augmentation(tuple(plan.patch_size), plan.ndim), masked_channels=masked)
    train_cases, _ = fold0_cases(prepared)
    sampler = PatchSampler(prepared.autounet_preprocessed / plan.data_identifier, train_cases, SamplerSettings(
        tuple(augmentation.sampling_patch_size), plan.batch_size, recipe.oversample_foreground,
        final_patch_size=tuple(plan.patch_size)))
    augmenter = BatchAugmenter(augmentation, torch.device("cpu"))
    loader = BatchLoader(sampler, recipe.seed, num_workers=workers, augment=augmenter)
    start = 0.0
    try:
        for iteration, (image_np, seg_np) in enumerate(loader.epoch(0, warmup + batches)):
            if iteration == warmup:
                start = time.perf_counter()
            image = torch.from_numpy(image_np)
            torch.from_numpy(seg_np).long().clamp_(min=0)  # the trainer's label conversion
        seconds = time.perf_counter() - start
    finally:
        loader.close()
    return batches / seconds, tuple(image.shape)


def main() -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", default="mr", choices=sorted(IDS))
    parser.add_argument("--num-cases", type=int, default=20)
    parser.add_argument("--shape", type=int, nargs="+", default=None, help="case shape (default: the kind's)")
    parser.add_argument("-w", "--workers", type=int, default=2, help="loader workers of both tools (default 2)")
    parser.add_argument("-c", "--configurations", nargs="+", default=["3d_fullres", "2d"],
                        choices=["3d_fullres", "2d"])
    parser.add_argument("--batches", type=int, default=30, help="timed batches per configuration")
    parser.add_argument("--warmup", type=int, default=8, help="untimed batches first (default 8)")
    args = parser.parse_args()

    prepared = prepare("dataloader", args.kind, args.num_cases, args.shape, args.workers)
    rows = [("tool", "configuration", "batch shape", "batches/s", "ratio")]
    for configuration in args.configurations:
        ref = run_driver(prepared, "loader", configuration,
                         ["--batches", str(args.batches), "--warmup", str(args.warmup), "--threads",
                          str(args.workers)], {"nnUNet_n_proc_DA": str(args.workers)})
        ours, shape = autounet_loader(prepared, configuration, args.workers, args.batches, args.warmup)
        rows.append(("autounet", configuration, "x".join(map(str, shape)), f"{ours:.2f}",
                     f"{ours / ref['batches_per_second']:.2f}x"))
        rows.append(("nnunetv2", configuration, "x".join(map(str, ref["data_shape"])),
                     f"{ref['batches_per_second']:.2f}", "1.00x"))
    print(f"\nDataset: example '{args.kind}', {args.num_cases} cases, shape {args.shape or 'default'}, fold 0; "
          f"{args.workers} workers; {args.batches} batches timed after {args.warmup}\n")
    print_table(rows)
    print("\nratio: autounet batches/s / nnU-Net batches/s (target >= 3x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
