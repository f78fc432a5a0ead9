"""Benchmark: peak host memory and time of ``autounet predict`` on one 512x512x800 CT.

Usage (from the repository root, autounet installed)::

    nice -n 10 python benchmarks/predict_memory.py [--shape 800 512 512] [--classes 3] [--keep]
                                                   [--backend torch|onnxruntime|openvino] [--precision fp32|int8]

Writes, under ``benchmarks/_work/predict_memory/``:

* one CT-like image, ``(Z, Y, X) = 800 x 512 x 512`` int16 at 0.8 x 0.7 x 0.7 mm, as an uncompressed ``.nii``
  (a body cylinder of soft tissue in -1000 HU air, with bright and dark blobs, in noise);
* a model folder ``results/Dataset990_Memory/3d_fullres`` with an **untrained** network: plans come from
  planning a tiny synthetic dataset at 2.5 mm isotropic spacing, so the CT is predicted at 2.5 mm (a
  256 x 143 x 143 grid) and its probabilities are resampled back to 210 M voxels. Memory is the point, not
  accuracy: the network's weights are random.

Then runs ``autounet predict --disable-tta`` on it once and prints wall time and peak resident memory of the
whole process tree (sampled every 50 ms), and the sizes that matter. The issue's target: <= 8 GB peak RSS.

``--backend onnxruntime`` or ``openvino`` (issue 11: the ONNX path within 8 GB) first deploys the model with
``autounet deploy -d 990 -c 3d_fullres --precision fp32 --no-accuracy-check --torchscript`` (the faster
exporter; the graph runs alike) into ``deployed_fp32/`` (untimed;
``--precision int8`` preprocesses the tiny training set and quantizes, calibrated on it, into ``deployed_int8/``)
and predicts with ``autounet predict -m DEPLOYED --backend BACKEND``.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
from _harness import WORK, print_table, timed_run

from autounet.io import ImageGeometry, write_image, write_segmentation
from autounet.io.checkpoints import save_checkpoint
from autounet.networks.unet import build_network
from autounet.planning.api import plan_dataset
from autounet.planning.plans import save_plans

DATASET = "Dataset990_Memory"
COARSE_SPACING = (2.5, 2.5, 2.5)
CT_SPACING = (0.8, 0.7, 0.7)


def _geometry(spacing: tuple[float, ...]) -> ImageGeometry:
    return ImageGeometry(spacing=spacing, origin=(0.0, 0.0, 0.0),
                         direction=((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)), world_frame="RAS")


def _dataset_json(num_classes: int, num_training: int) -> dict:
    labels = {"background": 0, **{f"organ{i}": i for i in range(1, num_classes)}}
    return {"channel_names": {"0": "CT"}, "labels": labels, "numTraining": num_training, "file_ending": ".nii",
            "name": DATASET}


def _tiny_dataset(raw: Path, num_classes: int) -> Path:
    """Four 48 x 96 x 96 cases at the coarse spacing: what the plans (and so the patch and spacing) come from."""
    folder = raw / DATASET
    rng = np.random.default_rng(0)
    shape = (48, 96, 96)
    for index in range(4):
        seg = np.zeros(shape, dtype=np.uint8)
        for label in range(1, num_classes):
            centre = rng.integers(16, 32), rng.integers(24, 72), rng.integers(24, 72)
            seg[tuple(slice(c - 6, c + 6) for c in centre)] = label
        image = rng.normal(40.0, 20.0, size=shape) + 100.0 * seg
        write_image(image.astype(np.int16), _geometry(COARSE_SPACING), folder / "imagesTr" / f"c{index}_0000.nii")
        write_segmentation(seg, _geometry(COARSE_SPACING), folder / "labelsTr" / f"c{index}.nii")
    (folder / "dataset.json").write_text(json.dumps(_dataset_json(num_classes, 4), indent=2))
    return folder


def _model_folder(root: Path, num_classes: int) -> Path:
    """Plans from the tiny dataset, one fold of random weights."""
    import torch

    raw = _tiny_dataset(root / "raw", num_classes)
    plans, _ = plan_dataset(raw, root / "preprocessed", num_processes=1)
    configuration = plans.configuration("3d_fullres")
    folder = root / "results" / DATASET / "3d_fullres"
    folder.mkdir(parents=True, exist_ok=True)
    save_plans(folder / "plans.json", plans)
    shutil.copy(raw / "dataset.json", folder / "dataset.json")
    torch.manual_seed(0)
    network = build_network(configuration.network, 1, num_classes, deep_supervision=False)
    save_checkpoint(folder / "fold_0" / "checkpoint_final.pt",
                    {"network": network.state_dict(), "metadata": {"configuration": "3d_fullres", "mirror_axes": []}})
    print(f"model: spacing {configuration.spacing} mm, patch {configuration.patch_size}", file=sys.stderr)
    return folder


def _ct_image(path: Path, shape: tuple[int, int, int]) -> None:
    """A CT-like int16 volume, written slab by slab into memory first (about 2 bytes per voxel)."""
    rng = np.random.default_rng(1)
    depth, height, width = shape
    yy, xx = np.mgrid[:height, :width]
    body = ((yy - height / 2) / (0.42 * height)) ** 2 + ((xx - width / 2) / (0.36 * width)) ** 2 <= 1.0
    volume = np.empty(shape, dtype=np.int16)
    blobs = [(rng.uniform(0.2, 0.8) * depth, rng.uniform(0.35, 0.65) * height, rng.uniform(0.35, 0.65) * width,
              rng.uniform(15, 40), rng.choice([-300.0, 200.0])) for _ in range(6)]
    for z in range(depth):
        plane = np.where(body, 40.0, -1000.0) + rng.normal(0.0, 15.0, size=(height, width))
        for bz, by, bx, radius, value in blobs:
            if abs(z - bz) < radius:
                r2 = radius**2 - (z - bz) ** 2
                plane[((yy - by) ** 2 + (xx - bx) ** 2 <= r2) & body] += value
        volume[z] = np.clip(plane, -1024, 3071).astype(np.int16)
    write_image(volume, _geometry(CT_SPACING), path)


def _deployed(root: Path, precision: str, keep: bool) -> Path:
    """The model deployed by ``autounet deploy`` (kept with ``keep``); INT8 calibrates on the tiny training set."""
    out = root / f"deployed_{precision}"
    if keep and (out / "deploy.json").is_file():
        return out
    shutil.rmtree(out, ignore_errors=True)
    autounet = [sys.executable, "-m", "autounet"]
    common = ["-d", DATASET, "--data-root", str(root)]
    commands = [[*autounet, "deploy", *common, "-c", "3d_fullres", "-o", str(out), "--precision", precision,
                 "--no-accuracy-check", "--torchscript"]]
    if precision == "int8":
        commands.insert(0, [*autounet, "preprocess", *common, "-c", "3d_fullres", "-np", "1"])
    for command in commands:
        result = timed_run(command, log=root / "deploy.log")
        if result.returncode != 0:
            print((root / "deploy.log").read_text()[-3000:], file=sys.stderr)
            raise SystemExit(f"'autounet {command[3]}' failed with exit code {result.returncode}")
    return out


def main() -> int:
    """Prepare the data once, run ``autounet predict`` once, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(800, 512, 512), metavar=("Z", "Y", "X"))
    parser.add_argument("--classes", type=int, default=3, help="output classes incl. background (3)")
    parser.add_argument("--keep", action="store_true", help="reuse image and model of an earlier run")
    parser.add_argument("--backend", choices=("torch", "onnxruntime", "openvino"), default="torch",
                        help="torch: the model folder; onnxruntime/openvino: a deployed copy of it (see above)")
    parser.add_argument("--precision", choices=("fp32", "int8"), default="fp32",
                        help="precision of the deployed copy (runtime backends only)")
    args = parser.parse_args()
    root = WORK / "predict_memory"
    image_file = root / "input" / "ct_000_0000.nii"
    model = root / "results" / DATASET / "3d_fullres"
    if not (args.keep and image_file.is_file() and model.is_dir()):
        shutil.rmtree(root, ignore_errors=True)
        model = _model_folder(root, args.classes)
        _ct_image(image_file, tuple(args.shape))
    if args.backend != "torch":
        model = _deployed(root, args.precision, args.keep)
    output = root / "output"
    shutil.rmtree(output, ignore_errors=True)
    command = [sys.executable, "-m", "autounet", "predict", "-i", str(image_file.parent), "-o", str(output),
               "-m", str(model), "--disable-tta", "--backend", args.backend]
    result = timed_run(command, log=root / "predict.log")
    if result.returncode != 0:
        print((root / "predict.log").read_text()[-3000:], file=sys.stderr)
        raise SystemExit(f"autounet predict failed with exit code {result.returncode}")
    voxels = math.prod(args.shape)
    print_table([("what", "value"),
                 ("image (Z, Y, X)", "x".join(map(str, args.shape))),
                 ("voxels", f"{voxels / 1e6:.0f} M"),
                 ("one float32 channel", f"{voxels * 4 / 2**30:.2f} GiB"),
                 ("classes", str(args.classes)),
                 ("backend", args.backend + ("" if args.backend == "torch" else f" ({args.precision})")),
                 ("seconds", f"{result.seconds:.1f}"),
                 ("peak RSS", f"{result.peak_rss_mib / 1024:.2f} GiB"),
                 ("target", "<= 8 GiB")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
