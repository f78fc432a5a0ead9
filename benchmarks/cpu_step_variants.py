"""What makes autounet's float32 CPU step and forward faster (issue 14, item 11): one network, several variants.

Times, on one fixed batch of a U-Net of the size autounet plans for the example MR dataset (3D, 6 stages, patch
``--patch``, batch 2) and a 2D one:

* ``step``: forward, deep-supervision Dice+CE loss, backward and SGD step (float32), median of ``--repeats``;
* ``forward``: one inference forward without deep supervision (what the sliding window calls), median;

for each variant: ``eager`` (what ``autounet train`` runs today), ``channels_last`` (3D/2D channels-last memory
format for the input and weights), ``compile`` (``torch.compile``, inductor, default mode), both together, and
``stacked_weight_gradient`` (3D: ``networks.weight_gradient``, the depth taps of stride-1 convolutions stacked into
one 2D weight gradient, which ``autounet train`` uses where PyTorch's kernels stop at AVX2).
Every variant runs twice: with the CPU's full instruction set and with oneDNN and MKL limited to AVX2
(``ONEDNN_MAX_CPU_ISA=AVX2``, ``MKL_ENABLE_INSTRUCTIONS=AVX2``) and PyTorch's own kernels too
(``ATEN_CPU_CAPABILITY=avx2``), which stands in for an AVX2-only CPU (each in
its own process, as the limits are read once at start-up). The last column is the largest absolute difference
of the variant's first-step loss from eager's, and the next, of its loss after three SGD steps (what a changed
gradient would move), to show the result is unchanged within float tolerance.

    PYTHONPATH=src python benchmarks/cpu_step_variants.py [--threads 2] [--repeats 5] [--ndim 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = ("eager", "channels_last", "compile", "compile+channels_last", "stacked_weight_gradient")
AVX2_LIMITS = {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}


def cpu_description() -> str:
    """CPU model and the flags that decide the speed of float32, bf16 and int8 kernels."""
    model, flags = "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "unknown CPU":
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ["avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8"]
    limits = [f"{name}={os.environ[name]}" for name in AVX2_LIMITS if name in os.environ]
    limited = f"; instruction sets limited by {' '.join(limits)}" if limits else ""
    return f"{model}; " + " ".join(f"{f}={'yes' if f in flags else 'no'}" for f in wanted) + limited


def _spec(ndim: int):  # noqa: ANN202 - imported lazily so the parent process need not import torch
    from autounet.networks.spec import UNetSpec

    if ndim == 3:
        return UNetSpec(3, "plain", (32, 64, 128, 256, 320, 320), ((3, 3, 3),) * 6,
                        ((1, 1, 1), (2, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2), (1, 2, 2)), (2,) * 6, (2,) * 5)
    return UNetSpec(2, "plain", (32, 64, 128, 256, 512, 512), ((3, 3),) * 6, ((1, 1),) + ((2, 2),) * 5, (2,) * 6,
                    (2,) * 5)


def measure(variant: str, ndim: int, patch: tuple[int, ...], batch: int, threads: int, repeats: int) -> dict:
    """Median seconds of a training step and of an inference forward for one variant (in this process)."""
    import torch

    from autounet.dataset.labels import LabelScheme
    from autounet.networks import build_network
    from autounet.networks.weight_gradient import use_stacked_weight_gradient
    from autounet.training.losses import build_loss

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    spec = _spec(ndim)
    network = build_network(spec, 1, 3, deep_supervision=True)
    inference = build_network(spec, 1, 3, deep_supervision=False).eval()
    loss_fn = build_loss(LabelScheme(labels=(0, 1, 2)), batch_dice=False, deep_supervision_levels=spec.num_stages - 1)
    optimizer = torch.optim.SGD(network.parameters(), lr=1e-2, momentum=0.99, nesterov=True)
    generator = torch.Generator().manual_seed(1)
    image = torch.randn((batch, 1, *patch), generator=generator)
    seg = torch.randint(0, 3, (batch, 1, *patch), generator=generator)
    memory_format = torch.channels_last_3d if ndim == 3 else torch.channels_last
    if "channels_last" in variant:
        network = network.to(memory_format=memory_format)
        inference = inference.to(memory_format=memory_format)
        image = image.contiguous(memory_format=memory_format)
    if variant == "stacked_weight_gradient":
        use_stacked_weight_gradient(network)
    trained = torch.compile(network) if "compile" in variant else network
    forward = torch.compile(inference) if "compile" in variant else inference

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(trained(image), seg)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), 12.0)
        optimizer.step()
        return float(loss)

    def infer() -> None:
        with torch.inference_mode():
            forward(image[:1])

    first_loss = step()  # warm-up (and compilation)
    step()
    third_loss = step()
    step_times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        step_times.append(time.perf_counter() - start)
    infer()
    infer()
    forward_times = []
    for _ in range(repeats):
        start = time.perf_counter()
        infer()
        forward_times.append(time.perf_counter() - start)
    return {"step": statistics.median(step_times), "forward": statistics.median(forward_times),
            "first_loss": first_loss, "third_loss": third_loss}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ndim", type=int, choices=(2, 3), default=3)
    parser.add_argument("--patch", type=int, nargs="+", default=None,
                        help="patch size (default 64 96 96 in 3D, 256 256 in 2D)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    patch = tuple(args.patch or ((64, 96, 96) if args.ndim == 3 else (256, 256)))
    if args.child is not None:
        print(json.dumps(measure(args.child, args.ndim, patch, args.batch, args.threads, args.repeats)))
        return 0
    print(f"CPU: {cpu_description()}; torch threads {args.threads}; {args.ndim}D patch {patch}, batch {args.batch}")
    rows = []
    for isa, limits in (("native", {}), ("AVX2 only", AVX2_LIMITS)):
        eager_loss = eager_third = None
        for variant in args.variants:
            command = [sys.executable, __file__, "--child", variant, "--threads", str(args.threads), "--repeats",
                       str(args.repeats), "--ndim", str(args.ndim), "--batch", str(args.batch), "--patch",
                       *map(str, patch)]
            done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **limits})
            if done.returncode != 0:
                rows.append((isa, variant, "failed", "", "", "", done.stderr.strip().splitlines()[-1][:60]))
                continue
            result = json.loads(done.stdout.strip().splitlines()[-1])
            if variant == "eager":
                eager_loss, eager_third = result["first_loss"], result["third_loss"]
            difference = abs(result["first_loss"] - eager_loss) if eager_loss is not None else float("nan")
            third = abs(result["third_loss"] - eager_third) if eager_third is not None else float("nan")
            rows.append((isa, variant, f"{result['step']:.3f}", f"{result['forward']:.3f}", f"{difference:.2e}",
                         f"{third:.2e}", ""))
    header = ("instructions", "variant", "step s", "forward s", "|loss - eager|", "step 3 |loss - eager|", "note")
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
