"""``autounet train``: train one fold of one configuration."""

from __future__ import annotations

import argparse
import logging
import math
from dataclasses import replace

from autounet.cli._common import (
    add_dataset_argument,
    add_device_argument,
    fold,
    loader_workers,
    non_negative_int,
    positive_int,
    random_seed,
)
from autounet.dataset.raw import find_raw_dataset
from autounet.devices import resolve_device
from autounet.errors import ConfigError
from autounet.paths import Paths
from autounet.training.recipe import BUILTIN_RECIPES, RunOptions, TrainingRecipe, load_recipe

__all__ = ["register", "run"]

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    """Add the ``train`` subcommand."""
    defaults = TrainingRecipe()
    parser = subparsers.add_parser(
        "train", parents=[parent], help="train one fold of a configuration",
        description="Train a fold (results/<Dataset>/<configuration>/fold_<f>/): checkpoints, training.log, "
                    "metrics.json, progress.png, then a full sliding-window validation with summary.json. "
                    "Interrupted runs continue exactly with --continue. Data-parallel training on several GPUs or "
                    "nodes: 'torchrun --nproc_per_node N -m autounet train ... --device cuda' (gloo on --device "
                    "cpu); the plan's batch is split across the N processes, rank 0 writes every file and runs "
                    "the final validation, and --continue loads checkpoint_latest.pt on every rank.")
    add_dataset_argument(parser)
    parser.add_argument("-c", "--configuration", required=True, help="2d, 3d_fullres, 3d_lowres, ...")
    parser.add_argument("-f", "--fold", type=fold, required=True, help="fold index (0-4) or 'all'")
    parser.add_argument("--recipe", default="default", metavar="NAME_OR_FILE",
                        help="training recipe: a built-in name (" + ", ".join(sorted(BUILTIN_RECIPES)) + ") or a "
                             "JSON file (fields of the recipe, 'inherits_from' another); runs of other recipes go "
                             "to <configuration>__<recipe>__<plans>/ beside the default's (default: default)")
    parser.add_argument("--epochs", type=positive_int, default=None, help=f"(recipe default: {defaults.epochs})")
    parser.add_argument("--iterations-per-epoch", type=positive_int, default=None,
                        help=f"(recipe default: {defaults.iterations_per_epoch})")
    parser.add_argument("--validation-iterations", type=non_negative_int, default=None,
                        help="pseudo-Dice batches per epoch (default: the recipe's 50, or a fifth of the training "
                             "iterations when fewer than 250)")
    parser.add_argument("--checkpoint-every", type=positive_int, default=None, metavar="EPOCHS",
                        help=f"(recipe default: {defaults.checkpoint_every})")
    parser.add_argument("--seed", type=random_seed, default=None, help=f"(recipe default: {defaults.seed})")
    parser.add_argument("--no-augmentation", action="store_true", help="train without data augmentation")
    add_device_argument(parser)
    parser.add_argument("--num-workers", type=loader_workers, default=2, help="background loader threads")
    parser.add_argument("--continue", action="store_true", dest="resume",
                        help="resume from checkpoint_latest.pt (none yet: start from scratch, with a warning)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile the network (default: for long float32 runs of 3D networks on AVX-512 "
                             "CPUs, with channels-last weights, where it was measured faster)")
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                        help="mixed precision (default: float16 on CUDA; bfloat16 on CPUs with native bf16, "
                             "e.g. AVX512-BF16/AMX; float32 elsewhere)")
    parser.add_argument("--save-probabilities", action="store_true", help="keep validation probabilities (.npz)")
    parser.add_argument("--no-validation", action="store_true", help="skip the final sliding-window validation")
    parser.add_argument("--plans", default="plans", help="plans file name in preprocessed/<Dataset>/")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, paths: Paths) -> int:
    """Train the requested fold."""
    # Imported here, not at the top: building the parser (`autounet -h`) must not import torch (seconds).
    from autounet.inference.cpu_memory import tune_cpu_allocator
    from autounet.training.distributed import distributed_session
    from autounet.training.run import FoldJob, train_fold

    fold = args.fold if args.fold == "all" else _fold_index(args.fold)
    recipe = _recipe(args)
    device = resolve_device(args.device)
    logger.info("device: %s", device)
    options = RunOptions(device=device, num_workers=args.num_workers, resume=args.resume, compile=args.compile,
                         save_probabilities=args.save_probabilities, validate=not args.no_validation, amp=args.amp,
                         show_progress=not getattr(args, "quiet", False))
    raw = find_raw_dataset(paths.raw, args.dataset)
    job = FoldJob(raw_dataset=raw, preprocessed=paths.preprocessed / raw.name, results=paths.results / raw.name,
                  configuration=args.configuration, fold=fold, plans_name=args.plans, recipe_name=recipe.name)
    # The loader allocates and frees patch-sized arrays for every batch (and, on the CPU, every augmentation
    # temporary); with glibc's defaults each one page-faults fresh memory: ~30% of the loader's time in 3D.
    tune_cpu_allocator()
    with distributed_session(options.device) as context:
        output = train_fold(job, recipe, options, context)
    if context.is_main:
        print(f"trained: {output}")
    return 0


def _recipe(args: argparse.Namespace) -> TrainingRecipe:
    """The named recipe with the values given on the command line replacing its own."""
    recipe = load_recipe(args.recipe)
    overrides = {name: value for name, value in (
        ("epochs", args.epochs), ("iterations_per_epoch", args.iterations_per_epoch),
        ("checkpoint_every", args.checkpoint_every), ("seed", args.seed)) if value is not None}
    if args.no_augmentation:
        overrides["augmentation"] = False
    iterations = overrides.get("iterations_per_epoch", recipe.iterations_per_epoch)
    if args.validation_iterations is not None:
        overrides["validation_iterations"] = args.validation_iterations
    elif iterations < 250 and recipe.validation_iterations == TrainingRecipe.validation_iterations:
        # Short runs validate proportionally less, unless the recipe chose its own number.
        overrides["validation_iterations"] = max(1, math.ceil(iterations / 5))
    try:
        return replace(recipe, **overrides)
    except ValueError as exc:
        raise ConfigError(f"invalid training options: {exc}") from None


def _fold_index(text: str) -> int:
    if not text.isdigit():
        raise ConfigError(f"fold must be an index (0, 1, ...) or 'all', got '{text}'")
    return int(text)
