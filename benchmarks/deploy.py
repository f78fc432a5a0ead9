"""Benchmark (issue 11): CPU prediction with torch fp32/bf16, ONNX Runtime fp32, INT8 and ``nnUNetv2_predict``.

Usage (from the repository root, autounet installed with its ``deploy`` extra)::

    python benchmarks/learns.py                   # once: fold 0 of 2d and 3d_fullres, both tools (see there)
    python benchmarks/deploy.py                   # the table on this CPU
    python benchmarks/deploy.py --avx2            # the same, standing in for an AVX2-only CPU
    python benchmarks/predict_memory.py --backend onnxruntime   # the 512x512x800 CT through a deployed folder

Without ``learns.py``'s models, ``deploy.py`` trains the missing ones itself by running ``learns.py --reuse`` for
just those (its default budgets: about 15 minutes per configuration and tool on 2 cores; ``--budget`` is passed
through, e.g. ``--budget 2d=2,10,2`` for a smoke run).

Models (example MR dataset, fold 0, from ``benchmarks/_work/learns/mr``):

* ``2d``, ``3d``: autounet's own models (``autounet/results/Dataset501_ExampleMR/{2d,3d_fullres}``);
* ``nnunet``: nnU-Net's ``nnUNetTrainer__nnUNetPlans__<--nnunet-configuration>`` model folder, imported
  (``autounet deploy -m``/``predict -m`` convert it on load).

Each model is deployed twice (``autounet deploy --precision fp32`` and ``--precision int8``, with the default
accuracy check on fold 0's validation cases; ``--deploy-args`` adds options), then the test images
(``--num-test-cases``, written by ``nnunet_agreement.py``) are predicted with mirroring on and off by:

* ``torch fp32``: ``autounet predict -m MODEL --backend torch``;
* ``torch bf16``: the same through the Python API under bfloat16 autocast (``_deploy_runner.py``); only on CPUs
  with native bf16 (AVX512-BF16/AMX), n/a elsewhere and under ``--avx2``;
* ``onnxruntime fp32``: ``autounet predict -m FP32_FOLDER --backend onnxruntime``;
* ``int8``: ``autounet predict -m INT8_FOLDER`` (the runtime ``deploy`` chose: OpenVINO);
* ``nnunetv2``: ``nnUNetv2_predict -device cpu`` on the nnU-Net model folder (its own venv; nnunet model only).

All autounet rows run with ``--threads`` (default: the physical cores) and ``--no-postprocessing``
(``nnUNetv2_predict`` applies none either). Columns: seconds per case (wall time of the whole command, start-up and
I/O included, divided by the cases), seconds per window (one network call with as many windows as the predictor
batches, divided by them, median of 5, in a process of its own; nnU-Net: one window per call as it predicts),
peak RSS of the command's process tree, model size on disk (fold 0's checkpoint file, which may hold optimizer
state too, or its ``model.onnx``), Dice per label and mean foreground Dice against ``labelsTs``, and time relative
to torch fp32 and to ``nnunetv2``.

``--avx2`` runs every row (deployment, predictions and window timings) with ``ONEDNN_MAX_CPU_ISA=AVX2``,
``MKL_ENABLE_INSTRUCTIONS=AVX2`` and ``ATEN_CPU_CAPABILITY=avx2``. That limits torch fully; OpenVINO only in
part: its oneDNN convolutions honour ``ONEDNN_MAX_CPU_ISA`` (``brgconv_avx2``), its own JIT kernels
(normalisation, elementwise) cannot be limited in release builds (``OV_CPU_MAX_ISA`` exists only in debug-caps
builds); ONNX Runtime's MLAS kernels pick the ISA from cpuid and have no knob. The ISA census printed below the
table says what ran. Deployed folders go to ``_work/deploy/{native,avx2}/``; ``--reuse`` keeps them.

Run time with the defaults (3 test cases, 3 models; estimated from earlier single runs on an idle 2-core
machine, not measured end to end): two deployments per model (export, INT8 calibration and the accuracy check on
fold 0's 4 validation cases, a few minutes each) plus 8 (autounet models) or 10 (nnU-Net model) prediction runs
of 10-60 s each; about 20-40 minutes in all, ``--avx2`` as much again. A smoke run on a loaded machine:
``--models 2d nnunet --num-test-cases 1 --deploy-args "--torchscript --check-disable-tta --check-max-cases 1"``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import nibabel as nib
import numpy as np
from _harness import WORK, RunResult, print_table, timed_run
from cpu_step_variants import cpu_description
from dataloader import Prepared, run_driver
from nnunet_agreement import (
    DATASET,
    DATASET_ID,
    ENDING,
    TestImages,
    check,
    nnunet_model_folder,
    run_autounet,
    run_nnunet,
    write_test_images,
)

from autounet.deploy.cpu import default_threads
from autounet.devices import cpu_has_native_bf16
from autounet.evaluation.metrics import label_overlaps

LEARNS = WORK / "learns" / "mr"
AUTOUNET_DATA = LEARNS / "autounet"
NNUNET_RESULTS = LEARNS / "nnunet_results"
RUNNER = Path(__file__).resolve().parent / "_deploy_runner.py"
AVX2_ENV = {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
BACKENDS = ("torch fp32", "torch bf16", "onnxruntime fp32", "int8", "nnunetv2")


@dataclass
class Model:
    """One trained model and its deployed copies."""

    name: str
    folder: Path
    configuration: str  # autounet's configuration name, or nnU-Net's for the imported model
    nnunet: bool
    checkpoint: str
    deployed: dict[str, Path] = field(default_factory=dict)  # precision -> folder
    deploy_seconds: dict[str, float] = field(default_factory=dict)
    deploy_failed: dict[str, str] = field(default_factory=dict)  # precision -> deploy's error line


@dataclass(frozen=True)
class Setting:
    """What every row of one run shares."""

    images: TestImages
    labels: Path
    env: dict[str, str]
    threads: int
    work: Path


def _models(args: argparse.Namespace) -> list[Model]:
    """The requested models, training the missing ones with ``learns.py --reuse``."""
    models = []
    for name in args.models:
        if name == "nnunet":
            folder = nnunet_model_folder(NNUNET_RESULTS, args.nnunet_configuration)
            model = Model(name, folder, args.nnunet_configuration, True, "checkpoint_final.pth")
            tool, configuration = "nnunetv2", args.nnunet_configuration
        else:
            configuration = "2d" if name == "2d" else "3d_fullres"
            folder = AUTOUNET_DATA / "results" / DATASET / configuration
            model = Model(name, folder, configuration, False, "checkpoint_final.pt")
            tool = "autounet"
        if not (folder / "fold_0" / model.checkpoint).is_file():
            _train(tool, configuration, args.budget)
        models.append(model)
    return models


def _train(tool: str, configuration: str, budgets: list[str]) -> None:
    command = [sys.executable, str(Path(__file__).with_name("learns.py")), "--reuse", "-c", configuration,
               "--tools", tool, *(option for budget in budgets for option in ("--budget", budget))]
    print(f"training the missing {tool} {configuration} model: {shlex.join(command)}", flush=True)
    if subprocess.run(command, check=False).returncode != 0:
        raise SystemExit(f"learns.py failed for {tool} {configuration}")


def _deploy(model: Model, precision: str, setting: Setting, reuse: bool, extra: list[str]) -> None:
    """``autounet deploy`` of fold 0 into ``<work>/<model>_<precision>``, timed (accuracy check included); a
    failure is recorded (its rows say n/a with deploy's error line) so the other rows still run."""
    out = setting.work / f"{model.name}_{precision}"
    model.deployed[precision] = out
    if reuse and (out / "deploy.json").is_file():
        return
    shutil.rmtree(out, ignore_errors=True)
    source = ["-m", str(model.folder), "-d", str(DATASET_ID)] if model.nnunet else ["-d", str(DATASET_ID), "-c",
                                                                                     model.configuration]
    command = [sys.executable, "-m", "autounet", "deploy", *source, "-f", "0", "-o", str(out), "--precision",
               precision, "--data-root", str(AUTOUNET_DATA), "-q", *extra]
    log = setting.work / f"deploy_{model.name}_{precision}.log"
    result = timed_run(command, env=setting.env, log=log)
    if result.returncode != 0:
        errors = [line for line in log.read_text().splitlines() if "error" in line.lower()] or ["no error line"]
        model.deploy_failed[precision] = errors[-1].strip()
        print(f"autounet deploy ({model.name}, {precision}) failed; see {log}", flush=True)
        return
    model.deploy_seconds[precision] = result.seconds


def _window(kind: str, folder: Path, checkpoint: str, setting: Setting) -> dict:
    """Seconds per window (and the ISA that ran it) from ``_deploy_runner.py window``."""
    command = [sys.executable, str(RUNNER), "window", kind, str(folder), "--checkpoint", checkpoint, "--threads",
               str(setting.threads)]
    done = subprocess.run(command, env={**os.environ, **setting.env}, capture_output=True, text=True, check=False)
    return _result(done, f"window timing ({kind}, {folder})", setting.work)


def _nnunet_window(model: Model, setting: Setting) -> dict:
    prepared = Prepared(DATASET_ID, setting.images.raw_root / DATASET, AUTOUNET_DATA / "preprocessed" / DATASET,
                        {"nnUNet_raw": str(AUTOUNET_DATA / "raw"),
                         "nnUNet_preprocessed": str(LEARNS / "nnunet_preprocessed"),
                         "nnUNet_results": str(NNUNET_RESULTS), "nnUNet_compile": "0"})
    return run_driver(prepared, "window", model.configuration, ["--iterations", "5", "--warmup", "1"], setting.env)


def _result(done: subprocess.CompletedProcess, what: str, work: Path) -> dict:
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        log = work / "runner_failure.log"
        log.write_text(done.stdout + "\n" + done.stderr)
        raise SystemExit(f"{what} failed; see {log}")
    return json.loads(lines[-1][len("RESULT "):])


def _predict(backend: str, model: Model, mirroring: bool, setting: Setting) -> tuple[RunResult, Path]:
    """One timed prediction of the test images; returns the run and the output folder."""
    tag = f"{model.name}_{backend.replace(' ', '_')}_{'tta' if mirroring else 'notta'}"
    out, log = setting.work / f"out_{tag}", setting.work / f"{tag}.log"
    threads = ["--threads", str(setting.threads), "--no-postprocessing"]
    images = setting.images
    if backend == "nnunetv2":
        result = run_nnunet(images, NNUNET_RESULTS, model.configuration, "0", mirroring, out, log,
                            extra_env=setting.env)
    elif backend == "torch bf16":
        shutil.rmtree(out, ignore_errors=True)
        command = [sys.executable, str(RUNNER), "predict-bf16", str(model.folder), str(images.images), str(out),
                   "--checkpoint", model.checkpoint, "--threads", str(setting.threads)]
        result = timed_run(command + ([] if mirroring else ["--disable-tta"]), env=setting.env, log=log)
    elif backend == "torch fp32":
        result = run_autounet(images, model.folder, "0", mirroring, out, log, "checkpoint_final.pt",
                              ["--backend", "torch", *threads], setting.env)
    else:
        folder = model.deployed["fp32" if backend == "onnxruntime fp32" else "int8"]
        runtime = ["--backend", "onnxruntime"] if backend == "onnxruntime fp32" else []
        result = run_autounet(images, folder, "0", mirroring, out, log, options=[*runtime, *threads],
                              env=setting.env)
    check(result, f"{backend} ({model.name})", log)
    return result, out


def _dice(setting: Setting, out: Path, labels: list[int]) -> dict[int, float]:
    """Mean Dice per label over the test cases (cases where a label is absent from both are left out)."""
    values: dict[int, list[float]] = {label: [] for label in labels}
    for case in setting.images.cases:
        reference = np.asanyarray(nib.load(setting.labels / f"{case}{ENDING}").dataobj)
        prediction = np.asanyarray(nib.load(out / f"{case}{ENDING}").dataobj)
        for label, overlap in zip(labels, label_overlaps(reference, prediction, labels), strict=True):
            if not math.isnan(overlap.dice):
                values[label].append(overlap.dice)
    return {label: float(np.mean(v)) if v else math.nan for label, v in values.items()}


def _size_mib(backend: str, model: Model) -> float:
    if backend in ("onnxruntime fp32", "int8"):
        folder = model.deployed["fp32" if backend == "onnxruntime fp32" else "int8"] / "fold_0"
        return sum(p.stat().st_size for p in folder.iterdir() if p.is_file()) / 2**20
    return (model.folder / "fold_0" / model.checkpoint).stat().st_size / 2**20


def _backends(model: Model, requested: list[str], bf16: bool) -> list[tuple[str, str]]:
    """(backend, why it is n/a or "") for the rows of one model."""
    rows = []
    for backend in requested:
        if backend == "nnunetv2" and not model.nnunet:
            continue  # nnU-Net cannot load autounet's checkpoints
        reason = "" if backend != "torch bf16" or bf16 else "n/a: no native bf16 on this CPU (or --avx2)"
        precision = {"onnxruntime fp32": "fp32", "int8": "int8"}.get(backend, "")
        if precision in model.deploy_failed:
            reason = f"n/a: deploy --precision {precision} failed (see below)"
        rows.append((backend, reason))
    return rows


def _model_rows(model: Model, args: argparse.Namespace, setting: Setting, labels: list[int],
                isa: dict[str, object]) -> list[tuple[str, ...]]:
    """Deploy, predict with every backend with and without mirroring, and tabulate one model."""
    needed = {"fp32": "onnxruntime fp32", "int8": "int8"}
    for precision, backend in needed.items():
        if backend in args.backends:
            _deploy(model, precision, setting, args.reuse, shlex.split(args.deploy_args))
    backends = _backends(model, args.backends, cpu_has_native_bf16() and not args.avx2)
    windows: dict[str, dict] = {}
    for backend, reason in backends:
        if reason:
            continue
        if backend == "nnunetv2":
            windows[backend] = _nnunet_window(model, setting)
            continue
        kind = {"torch fp32": "torch", "torch bf16": "bf16", "onnxruntime fp32": "onnxruntime"}.get(backend)
        folder = model.folder if kind in ("torch", "bf16") else model.deployed["fp32" if kind else "int8"]
        windows[backend] = _window(kind or "openvino", folder, model.checkpoint, setting)
        isa[f"{model.name} {backend}"] = windows[backend]["isa"]
    rows = []
    for mirroring in (True, False):
        runs = {backend: _predict(backend, model, mirroring, setting) for backend, reason in backends if not reason}
        reference = {name: runs[name][0].seconds for name in ("torch fp32", "nnunetv2") if name in runs}
        for backend, reason in backends:
            rows.append(_row(model, backend, reason, mirroring, runs.get(backend), windows.get(backend), reference,
                             setting, labels))
    return rows


def _row(model: Model, backend: str, reason: str, mirroring: bool, run: tuple[RunResult, Path] | None,
         window: dict | None, reference: dict[str, float], setting: Setting, labels: list[int]) -> tuple[str, ...]:
    head = (model.name, "on" if mirroring else "off", backend)
    if run is None or window is None:
        return (*head, reason, *([""] * (6 + len(labels))))
    result, out = run
    dice = _dice(setting, out, labels)
    ratios = tuple(f"{result.seconds / reference[name]:.2f}x" if name in reference else ""
                   for name in ("torch fp32", "nnunetv2"))
    return (*head, f"{result.seconds / len(setting.images.cases):.2f}", f"{window['seconds_per_window']:.4f}",
            f"{result.peak_rss_mib:.0f}", f"{_size_mib(backend, model):.1f}",
            *(f"{dice[label]:.4f}" for label in labels), f"{np.nanmean(list(dice.values())):.4f}", *ratios)


def _versions() -> str:
    found = []
    for package in ("torch", "onnx", "onnxruntime", "openvino", "nncf"):
        try:
            found.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            found.append(f"{package} missing")
    return ", ".join(found)


def _labels(images: TestImages) -> list[int]:
    description = json.loads((images.raw_root / DATASET / "dataset.json").read_text())
    return sorted(int(v) for v in description["labels"].values() if int(v) != 0)


def main() -> int:
    """Deploy, predict and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["2d", "3d", "nnunet"], choices=["2d", "3d", "nnunet"])
    parser.add_argument("--nnunet-configuration", default="2d", help="nnU-Net model to import (default: 2d)")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS, metavar="BACKEND",
                        help=f"rows to run (default: all of {', '.join(BACKENDS)})")
    parser.add_argument("--num-test-cases", type=int, default=3)
    parser.add_argument("--threads", type=int, default=default_threads(),
                        help="threads of every autounet row (default: the physical cores, %(default)s)")
    parser.add_argument("--avx2", action="store_true", help="limit every row to AVX2 (see above)")
    parser.add_argument("--reuse", action="store_true", help="keep deployed folders of an earlier run")
    parser.add_argument("--deploy-args", default="", help="extra 'autounet deploy' options, e.g. "
                        "'--check-disable-tta --check-max-cases 1'")
    parser.add_argument("--budget", action="append", default=[],
                        help="passed to learns.py when a model must be trained: CONFIG=EPOCHS,ITERATIONS,VAL")
    args = parser.parse_args()
    models = _models(args)
    images = write_test_images(WORK / "agreement", args.num_test_cases)
    mode = "avx2" if args.avx2 else "native"
    setting = Setting(images, images.raw_root / DATASET / "labelsTs", AVX2_ENV if args.avx2 else {},
                      args.threads, WORK / "deploy" / mode)
    setting.work.mkdir(parents=True, exist_ok=True)
    labels = _labels(images)
    isa: dict[str, object] = {}
    rows: list[tuple[str, ...]] = [("model", "mirroring", "backend", "s/case", "s/window", "peak RSS MiB",
                                    "size MiB", *(f"Dice {label}" for label in labels), "mean Dice",
                                    "time / torch fp32", "time / nnunetv2")]
    for model in models:
        rows += _model_rows(model, args, setting, labels, isa)
    print(f"\nCPU: {cpu_description()}\n{_versions()}; autounet threads {args.threads}; nnUNetv2_predict: its "
          f"default threads; instruction sets: {'limited to AVX2 (--avx2)' if args.avx2 else 'native'}")
    print(f"example MR dataset, fold 0, {len(images.cases)} test case(s); s/case includes start-up and I/O\n")
    print_table(rows)
    timed = [f"{m.name} {p} {s:.0f} s" for m in models for p, s in m.deploy_seconds.items()]
    print("\ndeployment (accuracy check included): " + ("; ".join(timed) or "folders of an earlier run (--reuse)"))
    for model in models:
        for precision, error in model.deploy_failed.items():
            print(f"deploy {model.name} {precision} failed: {error}")
    print("ISA per backend (torch: ATen capability; openvino: executed primitives per ISA):")
    for name, value in isa.items():
        print(f"  {name}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
