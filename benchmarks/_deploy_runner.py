"""The parts of ``benchmarks/deploy.py`` that run in a process of their own, with autounet's interpreter.

A process of their own so that the instruction-set limits of ``deploy.py --avx2`` (environment variables read
once, when torch, oneDNN or OpenVINO start) apply to them as to the timed ``autounet predict`` runs. The last
line of stdout is ``RESULT <json>``.

Usage::

    python benchmarks/_deploy_runner.py window {torch,bf16,onnxruntime,openvino} MODEL_FOLDER \
        [--checkpoint NAME] [--threads T]
    python benchmarks/_deploy_runner.py predict-bf16 MODEL_FOLDER IMAGES OUT [--checkpoint NAME] [--threads T] \
        [--disable-tta]

``window``: seconds per sliding window of fold 0's network, median of 5 calls after a warm-up call, with as many
windows per call as ``autounet predict`` uses (4 for torch on the CPU; the batch size ``autounet deploy`` measured
for a deployed folder), plus the instruction set that ran it where it can be read: ATen's CPU capability for
torch, the ISA named by OpenVINO's executed primitives (counted per ISA) for OpenVINO; ONNX Runtime does not say.
``predict-bf16``: ``autounet predict`` with the networks under bfloat16 autocast (``predict`` itself has no
bf16 option), otherwise as the CLI runs on the CPU: 4 windows per call, the tuned allocator, no postprocessing.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import re
from pathlib import Path

import torch

from autounet.deploy.cpu import seconds_per_window
from autounet.deploy.model_folder import ONNX_FILE, load_deployed_model, verify_deployed_files
from autounet.inference import PredictionSettings, Predictor, tune_cpu_allocator
from autounet.inference.loaded_model import LoadedModel
from autounet.inference.model_folder import load_model_folder

CPU_BATCH = 4  # windows per network call of `autounet predict` on the CPU (cli/predict.py)


class Bf16Network:
    """A torch patch model run under CPU bfloat16 autocast; logits returned as float32."""

    def __init__(self, network: torch.nn.Module) -> None:
        self.network = network

    def __call__(self, patches: torch.Tensor) -> torch.Tensor:
        """Logits of ``patches`` computed in bfloat16."""
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.network(patches).float()


def _torch_model(folder: Path, checkpoint: str, bf16: bool) -> LoadedModel:
    model = load_model_folder(folder, [0], checkpoint, "cpu")
    if bf16:
        model = dataclasses.replace(model, networks=tuple(Bf16Network(n) for n in model.networks))
    return model


def _openvino_isa(path: Path, threads: int) -> dict[str, int]:
    """How many of OpenVINO's executed primitives ran with which ISA (from their names, e.g.
    ``brgconv_avx512_amx_I8``), compiled as :class:`~autounet.deploy.runtime.OpenVinoPatchModel` compiles."""
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(path)), "CPU", {
        "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"})
    counts: collections.Counter[str] = collections.Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if "primitiveType" in info:
            name = info["primitiveType"].astype(str).lower()
            isa = next((tag for tag in ("amx", "avx512", "avx2", "sse41") if re.search(tag, name)), None)
            if isa:
                counts[isa] += 1
    return dict(counts)


def _window(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    if args.kind in ("torch", "bf16"):
        model, batch = _torch_model(args.folder, args.checkpoint, args.kind == "bf16"), CPU_BATCH
        isa: object = torch.backends.cpu.get_cpu_capability()
    else:
        model = load_deployed_model(args.folder, ["0"], threads=args.threads, backend=args.kind)
        batch = verify_deployed_files(args.folder).batch_size or CPU_BATCH
        isa = (_openvino_isa(args.folder / "fold_0" / ONNX_FILE, args.threads) if args.kind == "openvino"
               else "not reported (MLAS dispatches on cpuid)")
    channels = len(model.description.channel_names)
    shape = (batch, channels, *model.configuration.patch_size)
    seconds = seconds_per_window(model.networks[0], shape, repeats=5)
    return {"seconds_per_window": seconds, "batch": batch, "patch_size": list(model.configuration.patch_size),
            "isa": isa}


def _predict_bf16(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    tune_cpu_allocator()
    model = _torch_model(args.folder, args.checkpoint, bf16=True)
    settings = PredictionSettings(use_mirroring=not args.disable_tta, batch_size=CPU_BATCH, show_progress=False)
    outputs = Predictor(model, "cpu", settings).predict_folder(args.images, args.out)
    return {"cases": len(outputs)}


def main() -> int:
    """Parse arguments, run one mode, print ``RESULT <json>``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    modes = parser.add_subparsers(dest="mode", required=True)
    window = modes.add_parser("window")
    window.add_argument("kind", choices=("torch", "bf16", "onnxruntime", "openvino"))
    window.add_argument("folder", type=Path)
    bf16 = modes.add_parser("predict-bf16")
    bf16.add_argument("folder", type=Path)
    bf16.add_argument("images", type=Path)
    bf16.add_argument("out", type=Path)
    bf16.add_argument("--disable-tta", action="store_true")
    for sub in (window, bf16):
        sub.add_argument("--checkpoint", default="checkpoint_final.pt")
        sub.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    result = _window(args) if args.mode == "window" else _predict_bf16(args)
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
