"""Times parts of nnU-Net v2's own trainer; runs ONLY in the reference venv (``benchmarks/_work/nnunet_venv``).

Never imported by autounet, its tests or the other benchmark scripts: they start it as a subprocess with
nnU-Net's interpreter and the ``nnUNet_*`` environment variables set. The last line of stdout is
``RESULT <json>``.

Usage::

    nnunet_venv/bin/python benchmarks/_nnunet_driver.py loader DATASET_ID CONFIGURATION --batches 30 --warmup 8
    nnunet_venv/bin/python benchmarks/_nnunet_driver.py step DATASET_ID CONFIGURATION --iterations 5 --warmup 2
    nnunet_venv/bin/python benchmarks/_nnunet_driver.py train DATASET_ID CONFIGURATION --epochs 4 --iterations 25 \
        --val-iterations 5

``loader``: batches/s of ``nnUNetTrainer.get_dataloaders()`` (nnUNetDataLoader + training transforms in a
NonDetMultiThreadedAugmenter with ``nnUNet_n_proc_DA`` processes). ``step``: seconds of
``nnUNetTrainer.train_step`` on one fixed batch from that loader. ``train``: fold 0 of the default
``nnUNetTrainer`` with a reduced budget (epochs, iterations per epoch and validation iterations set on the trainer
before it starts), then its own final validation (``perform_actual_validation``); reports its ``summary.json``.
``stepdump``: one ``train_step``-equivalent on one batch, saving weights, batch, loss and gradients (``--out``).
``window``: seconds per sliding window of the trained fold-0 network as ``nnUNetv2_predict`` runs it (one window
per call, float32, ``torch.no_grad``), median of ``--iterations`` calls after ``--warmup``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch
from nnunetv2.run.run_training import get_trainer_from_args


def _trainer(dataset_id: str, configuration: str, threads: int):  # noqa: ANN202 - nnU-Net type
    torch.set_num_threads(threads)
    trainer = get_trainer_from_args(dataset_id, configuration, 0, "nnUNetTrainer", "nnUNetPlans",
                                    device=torch.device("cpu"))
    trainer.initialize()
    return trainer


def _loader(args: argparse.Namespace) -> dict:
    trainer = _trainer(args.dataset_id, args.configuration, args.threads)
    train, val = trainer.get_dataloaders()  # starts the worker processes and draws one batch of each
    try:
        for _ in range(args.warmup):
            batch = next(train)
        start = time.perf_counter()
        for _ in range(args.batches):
            batch = next(train)
        seconds = time.perf_counter() - start
    finally:
        for augmenter in (train, val):
            if hasattr(augmenter, "_finish"):
                augmenter._finish()
    return {"batches_per_second": args.batches / seconds, "data_shape": list(batch["data"].shape),
            "processes": int(os.environ.get("nnUNet_n_proc_DA", "-1")),
            "compiled": trainer._do_i_compile()}


def _first_batch(trainer) -> dict:  # noqa: ANN001 - nnU-Net type
    """One augmented batch from nnU-Net's training loader; its worker processes are stopped afterwards."""
    train, val = trainer.get_dataloaders()
    batch = next(train)
    for augmenter in (train, val):
        if hasattr(augmenter, "_finish"):
            augmenter._finish()
    return batch


def _step(args: argparse.Namespace) -> dict:
    trainer = _trainer(args.dataset_id, args.configuration, args.threads)
    batch = _first_batch(trainer)
    trainer.network.train()
    times = []
    for _ in range(args.warmup + args.iterations):
        start = time.perf_counter()
        trainer.train_step(batch)
        times.append(time.perf_counter() - start)
    plan = trainer.configuration_manager
    return {"seconds": statistics.median(times[args.warmup:]), "all_seconds": times,
            "patch_size": list(plan.patch_size), "batch_size": trainer.batch_size,
            "data_shape": list(batch["data"].shape), "compiled": trainer._do_i_compile(),
            "grad_scaler": trainer.grad_scaler is not None,
            "parameters": sum(p.numel() for p in trainer.network.parameters())}


def _train(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    trainer = get_trainer_from_args(args.dataset_id, args.configuration, 0, "nnUNetTrainer", "nnUNetPlans",
                                    device=torch.device("cpu"))
    # The budget is plain attributes read when training starts (nnU-Net's own _Xepochs variants do the same).
    trainer.num_epochs = args.epochs
    trainer.num_iterations_per_epoch = args.iterations
    trainer.num_val_iterations_per_epoch = args.val_iterations
    start = time.perf_counter()
    trainer.run_training()
    train_seconds = time.perf_counter() - start
    trainer.perform_actual_validation(False)
    with open(os.path.join(trainer.output_folder, "validation", "summary.json"), encoding="utf-8") as handle:
        summary = json.load(handle)
    return {"dice": {label: values["Dice"] for label, values in summary["mean"].items()},
            "foreground_mean_dice": summary["foreground_mean"]["Dice"], "train_seconds": train_seconds,
            "seconds": time.perf_counter() - start, "output_folder": trainer.output_folder}


def _stepdump(args: argparse.Namespace) -> dict:
    """One training step on one batch from nnU-Net's loader; save weights before/after, batch, loss, gradients."""
    torch.manual_seed(0)
    trainer = _trainer(args.dataset_id, args.configuration, args.threads)
    batch = _first_batch(trainer)
    network = trainer.network
    network.train()
    before = {key: value.clone() for key, value in network.state_dict().items()}
    trainer.optimizer.zero_grad()
    outputs = network(batch["data"])
    loss = trainer.loss(outputs, batch["target"])
    loss.backward()
    gradients = {key: p.grad.clone() for key, p in network.named_parameters() if p.grad is not None}
    torch.nn.utils.clip_grad_norm_(network.parameters(), 12)
    trainer.optimizer.step()
    torch.save({"before": before, "after": network.state_dict(), "data": batch["data"], "target": batch["target"],
                "loss": loss.detach(), "gradients": gradients, "output": outputs[0].detach(),
                "lr": trainer.optimizer.param_groups[0]["lr"]}, args.out)
    return {"loss": float(loss), "file": args.out}


def _window(args: argparse.Namespace) -> dict:
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    torch.set_num_threads(args.threads)
    folder = os.path.join(os.environ["nnUNet_results"], maybe_convert_to_dataset_name(args.dataset_id),
                          f"nnUNetTrainer__nnUNetPlans__{args.configuration}")
    predictor = nnUNetPredictor(device=torch.device("cpu"), perform_everything_on_device=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(folder, (0,), "checkpoint_final.pth")
    network = predictor.network
    network.load_state_dict(predictor.list_of_parameters[0])
    network.eval()
    channels = len(predictor.dataset_json["channel_names"])
    patch = torch.randn((1, channels, *predictor.configuration_manager.patch_size))
    times = []
    with torch.no_grad():
        for _ in range(args.warmup + args.iterations):
            start = time.perf_counter()
            network(patch)
            times.append(time.perf_counter() - start)
    return {"seconds_per_window": statistics.median(times[args.warmup:]), "threads": torch.get_num_threads(),
            "patch_size": list(predictor.configuration_manager.patch_size)}


def main() -> int:
    """Parse arguments, run one measurement, print ``RESULT <json>``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("loader", "step", "train", "stepdump", "window"))
    parser.add_argument("dataset_id")
    parser.add_argument("configuration")
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--val-iterations", type=int, default=5)
    parser.add_argument("--out", default="stepdump.pt", help="stepdump: file to write")
    args = parser.parse_args()
    result = {"loader": _loader, "step": _step, "train": _train, "stepdump": _stepdump,
              "window": _window}[args.mode](args)
    sys.stdout.flush()
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
