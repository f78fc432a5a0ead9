"""Benchmark: autounet vs nnU-Net v2 on fingerprint + planning + preprocessing, same data, same processes.

Usage (from the repository root, autounet installed)::

    python benchmarks/preprocess.py [--kind mr] [--num-cases 20] [--shape 64 160 160] [-np 2]

Writes the example dataset once, then runs, one after the other and each from scratch,
``autounet plan-and-preprocess`` and ``nnUNetv2_plan_and_preprocess --verify_dataset_integrity`` (both
verify, fingerprint, plan and preprocess 2d, 3d_fullres and, where planned, 3d_lowres), and prints wall
time and peak resident memory of the whole process tree, then both plans side by side.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from _harness import WORK, ensure_nnunet_venv, print_table, timed_run

IDS = {"mr": 501, "ct": 502, "multichannel": 503, "png2d": 504}


def main() -> int:
    """Run the benchmark and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", default="mr", choices=sorted(IDS))
    parser.add_argument("--num-cases", type=int, default=20)
    parser.add_argument("--shape", type=int, nargs="+", default=None, help="case shape (default: the kind's)")
    parser.add_argument("-np", "--num-processes", type=int, default=2, dest="num_processes")
    args = parser.parse_args()

    nnunet_bin = ensure_nnunet_venv()
    root = WORK / "preprocess" / args.kind
    data = root / "autounet"
    example = [sys.executable, "-m", "autounet", "example", args.kind, "--num-cases", str(args.num_cases),
               "--num-test-cases", "0", "--overwrite", "--data-root", str(data), "-q"]
    if args.shape:
        example += ["--shape", *map(str, args.shape)]
    if timed_run(example).returncode != 0:
        raise SystemExit("writing the example dataset failed")
    dataset_id = IDS[args.kind]
    np_ = str(args.num_processes)

    results = {}
    for folder in (data / "preprocessed", root / "nnunet_preprocessed", root / "nnunet_results"):
        shutil.rmtree(folder, ignore_errors=True)  # both start from scratch
    for tool in ("autounet", "nnunetv2"):
        log = root / f"{tool}.log"
        if tool == "autounet":
            command = [sys.executable, "-m", "autounet", "plan-and-preprocess", "-d", str(dataset_id), "-np", np_,
                       "--data-root", str(data)]
            env = {}
        else:
            command = [str(nnunet_bin / "nnUNetv2_plan_and_preprocess"), "-d", str(dataset_id), "-np", np_,
                       "-npfp", np_, "--verify_dataset_integrity", "-c", "2d", "3d_fullres", "3d_lowres"]
            env = {"nnUNet_raw": str(data / "raw"), "nnUNet_preprocessed": str(root / "nnunet_preprocessed"),
                   "nnUNet_results": str(root / "nnunet_results"), "nnUNet_n_proc_DA": np_}
        results[tool] = timed_run(command, env=env, log=log)
        if results[tool].returncode != 0:
            raise SystemExit(f"{tool} failed; see {log}")

    ours, ref = results["autounet"], results["nnunetv2"]
    print(f"\nDataset: example '{args.kind}', {args.num_cases} cases, shape {args.shape or 'default'}, "
          f"{args.num_processes} processes\n")
    print_table([
        ("tool", "wall time (s)", "peak RSS (MiB)"),
        ("autounet", f"{ours.seconds:.1f}", f"{ours.peak_rss_mib:.0f}"),
        ("nnunetv2", f"{ref.seconds:.1f}", f"{ref.peak_rss_mib:.0f}"),
        ("ratio", f"{ours.seconds / ref.seconds:.2f}x", f"{ours.peak_rss_mib / ref.peak_rss_mib:.2f}x"),
    ])
    print()
    _print_plans(data / "preprocessed", root / "nnunet_preprocessed")
    return 0


def _print_plans(autounet_pre: Path, nnunet_pre: Path) -> None:
    ours = json.loads(next(autounet_pre.glob("*/plans.json")).read_text())
    ref = json.loads(next(nnunet_pre.glob("*/nnUNetPlans.json")).read_text())
    rows = [("configuration", "tool", "spacing", "patch", "batch", "stages")]
    ref_configs = ref["configurations"]
    for name in sorted(set(ours["configurations"]) | set(ref_configs)):
        mine = ours["configurations"].get(name, {})
        if "inherits_from" in mine:
            mine = {**ours["configurations"][mine["inherits_from"]], **mine}
        theirs = ref_configs.get(name, {})
        if "inherits_from" in theirs:
            theirs = {**ref_configs[theirs["inherits_from"]], **theirs}
        rows.append((name, "autounet", *_describe(mine.get("spacing"), mine.get("patch_size"),
                                                  mine.get("batch_size"), len(mine["network"]["strides"])
                                                  if mine else None)))
        arch = theirs.get("architecture", {}).get("arch_kwargs", {})
        rows.append(("", "nnunetv2", *_describe(theirs.get("spacing"), theirs.get("patch_size"),
                                               theirs.get("batch_size"), arch.get("n_stages"))))
    print_table(rows)


def _describe(spacing: list | None, patch: list | None, batch: int | None, stages: int | None) -> tuple[str, ...]:
    if spacing is None:
        return ("-", "-", "-", "-")
    return ("x".join(f"{s:.3g}" for s in spacing), "x".join(map(str, patch or [])), str(batch), str(stages))


if __name__ == "__main__":
    raise SystemExit(main())
