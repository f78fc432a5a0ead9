"""Benchmark: seconds per training iteration on the CPU, autounet vs nnU-Net v2, same plan, same batch shape.

Usage (from the repository root, autounet installed)::

    python benchmarks/train_step.py [--kind mr] [--num-cases 20] [--shape 32 160 160] [--threads 2]
                                    [-c 3d_fullres 2d] [--iterations 5] [--warmup 2]

Writes the example dataset and plans + preprocesses it with both tools (as ``benchmarks/dataloader.py``), then
times, per configuration (fold 0), ``--iterations`` training steps after ``--warmup`` on one fixed augmented
batch and reports the median:

* autounet: network, loss, optimizer and augmentation built by ``training/run.py`` (``_build_parts``), then
  ``Trainer._step`` (forward, deep-supervision loss, backward, gradient clipping, SGD step);
* nnU-Net: ``nnUNetTrainer(device=cpu).initialize()`` and its ``train_step`` on a batch from its own training
  loader (run by ``benchmarks/_nnunet_driver.py`` inside nnU-Net's venv).

Both with ``torch.set_num_threads(--threads)``, no torch.compile. Both networks are the same architecture, so the
table also gives the convolution arithmetic of one step (``conv GFLOP``: the forward's convolutions and transposed
convolutions, counted on the batch, times three for forward, input gradient and weight gradient, the first
convolution's input gradient left out) and the rate each step reaches (``GFLOP/s``); the line below the table
gives the fastest single convolution measured on this CPU (the best of a few 3x3 convolutions, forward, in both
memory formats, before and after the steps), so ``conv GFLOP / that rate`` bounds the step from below whatever
the rest of it does.
nnU-Net trains in float32 on the CPU; autounet uses bfloat16 autocast where the CPU computes bf16 natively
(AVX512-BF16/AMX; ``autounet train --no-amp`` turns it off) and float32 elsewhere. ``--autounet-precision both``
adds a float32 autounet row. If the default example is too slow, ``--shape`` makes smaller cases (and so a smaller
planned patch).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

from _harness import WORK, print_table
from cpu_step_variants import cpu_description
from dataloader import IDS, Prepared, fold0_cases, prepare, run_driver


def autounet_step(prepared: Prepared, configuration: str, threads: int, iterations: int,
                  warmup: int, amp: bool | None = None) -> dict:
    """Median seconds of ``Trainer._step`` with the parts ``train_fold`` builds."""
    import torch

    from autounet.dataset.labels import LabelScheme
    from autounet.dataset.raw import load_raw_dataset
    from autounet.inference.cpu_memory import tune_cpu_allocator
    from autounet.planning.plans import load_plans
    from autounet.training.objectives import ObjectiveContext, build_objective
    from autounet.training.recipe import RunOptions, TrainingRecipe
    from autounet.training.run import _augmentation, _build_parts
    from autounet.training.trainer import Trainer

    torch.set_num_threads(threads)
    tune_cpu_allocator()  # as `autounet train` does at start-up
    plans = load_plans(prepared.autounet_preprocessed / "plans.json")
    plan = plans.configuration(configuration)
    recipe = TrainingRecipe()
    dataset = load_raw_dataset(prepared.raw)
    labels = LabelScheme.from_description(dataset.description)
    train_cases, val_cases = fold0_cases(prepared)
    torch.manual_seed(recipe.seed)
    output = WORK / "train_step" / "autounet_run"
    try:  # single-process context of a distributed-capable run.py; a bare device before that existed
        from autounet.training.distributed import DistributedContext
        context: object = DistributedContext(device=torch.device("cpu"))
    except ImportError:
        context = torch.device("cpu")
    data_folder = prepared.autounet_preprocessed / plan.data_identifier
    augmentation = _augmentation(plan, recipe)
    objective = build_objective(recipe.objective, ObjectiveContext(
        plans=plans, configuration=plan, labels=labels, dataset=dataset, data_folder=data_folder,
        validation_cases=tuple(val_cases), output=output, recipe=recipe, mirror_axes=tuple(augmentation.mirror_axes)))
    parts = _build_parts(plan, augmentation, objective, data_folder, train_cases, val_cases, recipe,
                         RunOptions(device="cpu", num_workers=0, show_progress=False, amp=amp), context, output)
    trainer = Trainer(parts)
    image_np, seg_np = next(iter(parts.train_loader.epoch(0, 1)))
    image, seg = torch.from_numpy(image_np), torch.from_numpy(seg_np)
    if parts.augment is not None:  # on the CPU the loader has augmented already
        image, seg = parts.augment(image, seg, torch.Generator().manual_seed(0))
    inputs, targets = parts.objective.prepare(image, seg)
    flops = conv_flops(parts.network, inputs)
    parts.network.train()
    times = []
    for _ in range(warmup + iterations):
        start = time.perf_counter()
        trainer._step(inputs, targets)
        times.append(time.perf_counter() - start)
    return {"seconds": statistics.median(times[warmup:]), "all_seconds": times, "patch_size": list(plan.patch_size),
            "batch_size": plan.batch_size, "data_shape": list(image.shape),
            "parameters": sum(p.numel() for p in parts.network.parameters()), "conv_flops": flops,
            "precision": str(parts.amp_dtype or torch.float32).removeprefix("torch.")}


def conv_flops(network: object, inputs: object) -> float:
    """Floating-point operations of the convolutions of one training step of ``network`` on ``inputs``: the
    forward's, counted with hooks, times three (forward, input and weight gradient) less the first convolution's
    input gradient (the image needs none)."""
    import torch

    forward: list[float] = []
    first: list[float] = []

    def count(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> None:
        kernel = math.prod(module.kernel_size)
        if isinstance(module, torch.nn.modules.conv._ConvTransposeNd):
            operations = 2.0 * args[0].numel() * module.out_channels // module.groups * kernel
        else:
            operations = 2.0 * output.numel() * module.in_channels // module.groups * kernel
        forward.append(operations)
        if args[0] is inputs:
            first.append(operations)

    hooks = [module.register_forward_hook(count) for module in network.modules()
             if isinstance(module, torch.nn.modules.conv._ConvNd)]
    try:
        with torch.no_grad():
            network(inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return 3 * sum(forward) - sum(first)


def fastest_convolution(threads: int) -> tuple[float, str]:
    """The highest rate (FLOP/s) and its description among a few 3x3 convolutions' forwards on this CPU."""
    import torch

    torch.set_num_threads(threads)
    best = (0.0, "")
    for batch, channels, size in ((21, 32, 80), (21, 64, 40), (21, 128, 20), (8, 64, 64)):
        for memory_format in (torch.contiguous_format, torch.channels_last):
            image = torch.randn(batch, channels, size, size).contiguous(memory_format=memory_format)
            weight = torch.randn(channels, channels, 3, 3).contiguous(memory_format=memory_format)
            torch.nn.functional.conv2d(image, weight, padding=1)
            times = []
            for _ in range(5):
                start = time.perf_counter()
                torch.nn.functional.conv2d(image, weight, padding=1)
                times.append(time.perf_counter() - start)
            rate = 2.0 * batch * channels * channels * 9 * size * size / statistics.median(times)
            name = "channels-last" if memory_format is torch.channels_last else "NCHW"
            best = max(best, (rate, f"{batch}x{channels}x{size}x{size} to {channels} channels, {name}"))
    return best


def main() -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", default="mr", choices=sorted(IDS))
    parser.add_argument("--num-cases", type=int, default=20)
    parser.add_argument("--shape", type=int, nargs="+", default=None,
                        help="case shape (default: the kind's); smaller cases plan a smaller patch")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads of both tools")
    parser.add_argument("-np", "--num-processes", type=int, default=2, dest="num_processes",
                        help="preprocessing processes")
    parser.add_argument("-c", "--configurations", nargs="+", default=["3d_fullres", "2d"],
                        choices=["3d_fullres", "2d"])
    parser.add_argument("--iterations", type=int, default=5, help="timed iterations (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations first")
    parser.add_argument("--autounet-precision", choices=["auto", "both"], default="both",
                        help="auto: autounet's default only; both: also a float32 autounet row")
    args = parser.parse_args()

    prepared = prepare("train_step", args.kind, args.num_cases, args.shape, args.num_processes)
    # Measured before and after the steps, the higher kept: this machine's speed drifts within a run.
    fastest = fastest_convolution(args.threads)
    rows = [("tool", "configuration", "precision", "patch", "batch", "parameters", "conv GFLOP", "s/iteration",
             "GFLOP/s", "ratio")]
    for configuration in args.configurations:
        ref = run_driver(prepared, "step", configuration,
                         ["--iterations", str(args.iterations), "--warmup", str(args.warmup), "--threads",
                          str(args.threads)], {"nnUNet_n_proc_DA": "0"})
        ref["precision"] = "float32"
        measured = [("autounet", autounet_step(prepared, configuration, args.threads, args.iterations, args.warmup))]
        if args.autounet_precision == "both" and measured[0][1]["precision"] != "float32":
            measured.append(("autounet", autounet_step(prepared, configuration, args.threads, args.iterations,
                                                       args.warmup, amp=False)))
        flops = measured[0][1]["conv_flops"]  # the same architecture and batch in both tools
        for tool, result in (*measured, ("nnunetv2", ref)):
            rows.append((tool, configuration, result["precision"], "x".join(map(str, result["patch_size"])),
                         str(result["batch_size"]), f"{result['parameters']:,}", f"{flops / 1e9:.1f}",
                         f"{result['seconds']:.3f}", f"{flops / result['seconds'] / 1e9:.0f}",
                         f"{result['seconds'] / ref['seconds']:.2f}x"))
    rate, convolution = max(fastest, fastest_convolution(args.threads))
    print(f"\nCPU: {cpu_description()}")
    print(f"Dataset: example '{args.kind}', {args.num_cases} cases, shape {args.shape or 'default'}, fold 0; "
          f"{args.threads} torch threads; median of {args.iterations} iterations after {args.warmup}\n")
    print_table(rows)
    print("\nratio: autounet s/iteration / nnU-Net s/iteration (target <= 0.8x)")
    print(f"fastest convolution measured on this CPU: {rate / 1e9:.0f} GFLOP/s ({convolution}, forward, float32); "
          "a step's convolutions alone take at least conv GFLOP / that rate")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
