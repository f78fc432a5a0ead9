"""Benchmark (issue 14, item 11): ``autounet predict`` of one large 3D volume, eager vs ``torch.compile``.

Usage (from the repository root, after a 3d_fullres model of the example MR dataset exists, e.g. the README's
first command)::

    python benchmarks/predict_compile.py --model-folder DATA/results/Dataset501_ExampleMR/3d_fullres \\
        --image DATA/raw/Dataset501_ExampleMR/imagesTs/mr_020_0000.nii.gz [--tile 2 2 3] [--fold 0]

Tiles the image (``--tile``, same spacing) into one volume large enough for hundreds of windows, then predicts
it three times in fresh processes, mirroring on: ``--no-compile`` (eager), ``--compile`` (channels-last +
``torch.compile`` from the first window, compilation included in the time) and the default (automatic: eager
for a minute, then compiled, on 3D models and AVX-512 CPUs). Prints wall seconds, the ratio to eager and the
share of voxels whose label equals eager's, with the CPU model and flags.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
from _harness import print_table, timed_run
from cpu_step_variants import cpu_description

MODES = {"eager (--no-compile)": ("--no-compile",), "--compile": ("--compile",), "automatic (default)": ()}


def main() -> int:
    """Write the tiled volume, predict it in each mode and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-folder", type=Path, required=True)
    parser.add_argument("--image", type=Path, required=True, help="a single-channel 3D NIfTI image (_0000)")
    parser.add_argument("--tile", type=int, nargs=3, default=(2, 2, 3))
    parser.add_argument("--fold", default="0")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work_dir:
        work = Path(work_dir)
        (work / "images").mkdir()
        image = nib.load(args.image)
        tiled = np.tile(np.asanyarray(image.dataobj), args.tile)
        nib.save(nib.Nifti1Image(tiled, image.affine, image.header), work / "images" / "big_000_0000.nii.gz")
        rows, labels, eager_seconds = [("mode", "seconds", "vs eager", "labels equal to eager")], {}, None
        for name, extra in MODES.items():
            out = work / f"out_{len(labels)}"
            command = [sys.executable, "-m", "autounet", "predict", "-m", str(args.model_folder), "-f", args.fold,
                       "-i", str(work / "images"), "-o", str(out), "-q", "--no-postprocessing", "--threads",
                       str(args.threads), *extra]
            result = timed_run(command, log=work / f"{len(labels)}.log")
            if result.returncode != 0:
                tail = (work / f"{len(labels)}.log").read_text().strip().splitlines()[-5:]
                raise SystemExit(f"{name} failed:\n" + "\n".join(tail))
            labels[name] = np.asanyarray(nib.load(out / "big_000.nii.gz").dataobj)
            eager_seconds = eager_seconds or result.seconds
            same = 100 * float(np.mean(labels[name] == next(iter(labels.values()))))
            rows.append((name, f"{result.seconds:.0f}", f"{result.seconds / eager_seconds:.2f}x", f"{same:.4f}%"))
    print(f"\nCPU: {cpu_description()}")
    print(f"One volume {tuple(tiled.shape)} (tile {tuple(args.tile)} of {args.image.name}), fold {args.fold}, "
          f"mirroring on, {args.threads} threads; wall time of the whole command\n")
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
