"""Training one fold: assemble the parts from plans, data and recipe, run the loop, validate."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import torch

from autounet.data.augmentation import AugmentationConfig, BatchAugmenter, default_augmentation
from autounet.data.augmentation.config import compute_sampling_patch_size
from autounet.data.loader import BatchLoader
from autounet.data.sampler import PatchSampler, SamplerSettings
from autounet.dataset.derived import derive_description
from autounet.dataset.labels import OutputLayout
from autounet.dataset.raw import RawDataset, load_raw_dataset
from autounet.detection.retina_unet import build_planned_detector
from autounet.devices import cpu_compile_speeds_up_float32, cpu_stacked_weight_gradient_speeds_up
from autounet.errors import CheckpointError, ConfigError
from autounet.io.checkpoints import check_matches, check_weights, load_checkpoint
from autounet.io.serialization import from_dict, load_dataclass, save_dataclass, to_dict
from autounet.networks.group_norm import use_group_norm_instance_norms
from autounet.networks.registry import build_network, network_builder
from autounet.networks.weight_gradient import use_stacked_weight_gradient
from autounet.paths import run_folder_name, sibling_run_folder
from autounet.planning.plans import ConfigurationPlan, Plans, load_plans, save_plans
from autounet.preprocessing.dataset import resolve_data_identifier
from autounet.preprocessing.storage import case_finished
from autounet.training.callbacks import MetricsFile, ProgressPlot
from autounet.training.distributed import DistributedContext, split_batch, unwrap, verify_ranks_agree, wrap_network
from autounet.training.objectives import Objective, ObjectiveContext, build_objective
from autounet.training.optim import build_optimizer
from autounet.training.recipe import RunOptions, TrainingRecipe
from autounet.training.splits import fold_cases, load_or_create_splits
from autounet.training.trainer import Trainer, TrainingParts
from autounet.training.validation import next_stage_folder

__all__ = ["FoldJob", "objective_name", "train_fold"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FoldJob:
    """Which fold of which configuration to train, and where things are.

    Attributes:
        raw_dataset: The raw dataset folder.
        preprocessed: ``preprocessed/<DatasetName>`` (plans, splits, data folders).
        results: ``results/<DatasetName>``; the fold goes to ``<configuration>/fold_<fold>/``.
        configuration: Configuration name.
        fold: Fold index, or ``"all"`` to train on every case.
        plans_name: Plans file name without ``.json``.
        recipe_name: Name of the training recipe.
    """

    raw_dataset: Path
    preprocessed: Path
    results: Path
    configuration: str
    fold: int | Literal["all"]
    plans_name: str = "plans"
    recipe_name: str = "default"

    @property
    def run_folder(self) -> Path:
        """``results/<Dataset>/<configuration>`` (other recipes or plans: see :func:`run_folder_name`)."""
        return self.results / run_folder_name(self.configuration, self.recipe_name, self.plans_name)

    @property
    def fold_folder(self) -> Path:
        """``<run folder>/fold_<fold>``."""
        return self.run_folder / f"fold_{self.fold}"


def train_fold(job: FoldJob, recipe: TrainingRecipe, options: RunOptions,
               distributed: DistributedContext | None = None) -> Path:
    """Train (or resume) one fold and run its final validation.

    Under data-parallel training (``distributed`` from :func:`~autounet.training.distributed.distributed_session`)
    every rank calls this; rank 0 alone writes files and runs the final validation while the others wait.

    Returns:
        The fold folder holding checkpoints, logs, ``progress.png`` and ``validation/summary.json``.

    Raises:
        ConfigError: Missing plans or preprocessed data, a fold the split file lacks, or a resume with a
            different recipe.
        CheckpointError: A finished or started run without ``--continue``. ``--continue`` with no checkpoint yet
            starts from scratch with a warning.
    """
    dataset = load_raw_dataset(job.raw_dataset)
    plans = _load_plans(job)
    # The maps trained on: the dataset's, or those the configuration's label derivation computes from them.
    derivation = plans.configuration(job.configuration).label_derivation
    layout = OutputLayout.from_description(derive_description(dataset.description, derivation))
    plans = _with_recipe_network(plans, job.configuration, recipe, layout)
    configuration = plans.configuration(job.configuration)
    labels = layout.tasks[0].scheme
    data_folder = job.preprocessed / resolve_data_identifier(plans, configuration)
    case_ids = [c.case_id for c in dataset.cases]
    missing = [c for c in case_ids if not case_finished(data_folder, c)]
    if missing:
        raise ConfigError(f"{len(missing)} case(s) not preprocessed for '{job.configuration}' (e.g. {missing[0]}); "
                          f"run 'autounet preprocess -d {dataset.name} -c {job.configuration}'", data_folder)
    splits_path = job.preprocessed / "splits.json"
    fold = fold_cases(load_or_create_splits(splits_path, case_ids), job.fold, case_ids, source=splits_path)
    previous_stage = _previous_stage_folder(job, configuration, (*fold.train, *fold.val))
    output = job.fold_folder
    context = distributed or DistributedContext(device=torch.device(options.device))
    _prepare_output(job, recipe, options, plans, dataset, write=context.is_main)
    context.barrier()  # the fold folder exists before any rank goes on
    _setup_logging(output / "training.log", context)
    device = context.device
    torch.manual_seed(recipe.seed)
    augmentation = _augmentation(configuration, recipe)
    objective = build_objective(objective_name(recipe, layout), ObjectiveContext(
        plans=plans, configuration=configuration, labels=labels, dataset=dataset, data_folder=data_folder,
        validation_cases=fold.val, output=output, recipe=recipe, mirror_axes=tuple(augmentation.mirror_axes),
        previous_stage_folder=previous_stage, save_probabilities=options.save_probabilities,
        show_progress=options.show_progress, layout=layout))
    parts = _build_parts(configuration, augmentation, objective, data_folder, fold.train, fold.val, recipe,
                         options, context, output, previous_stage)
    trainer = Trainer(parts)
    if options.resume and (output / "checkpoint_latest.pt").is_file():
        # Every rank loads the same checkpoint, so all continue from identical states.
        _resume(trainer, output / "checkpoint_latest.pt", device)
        logger.info("resuming %s at epoch %d", output, trainer.state.epoch)
    logger.info("training %s fold %s with recipe '%s' (%s): %d training / %d validation cases, %d epochs x %d "
                "iterations, device %s", job.configuration, job.fold, recipe.name, recipe.fingerprint(),
                len(fold.train), len(fold.val), recipe.epochs, recipe.iterations_per_epoch, device)
    try:
        trainer.fit()
    finally:
        parts.train_loader.close()
        parts.val_loader.close()
    verify_ranks_agree(parts.network, context)
    if options.validate and context.is_main:
        objective.validate(unwrap(parts.network), device)
    context.wait_for_main()
    return output


# What ``Trainer.save`` writes into checkpoint_latest.pt beside the weights; checkpoint_final.pt lacks them.
_RESUME_KEYS = ("optimizer", "epoch", "history", "tracker", "best_ema")


def _resume(trainer: Trainer, path: Path, device: torch.device) -> None:
    """Continue ``trainer`` from ``path``, checked as model loading checks a checkpoint (finite tensors that
    fit the network) and for the training state beside the weights.

    Raises:
        CheckpointError: A truncated or foreign file, weights of another network, or no training state.
    """
    state = load_checkpoint(path, map_location=device)
    check_matches(check_weights(state, "network", path), unwrap(trainer.parts.network).state_dict(), path)
    missing = [key for key in _RESUME_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"holds no '{missing[0]}' to continue from (a final or best checkpoint keeps only the "
                              "weights); delete it to start the fold over", path)
    epoch = state["epoch"]
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0 or not isinstance(state["history"], dict):
        raise CheckpointError(f"'epoch' {epoch!r} or 'history' is not what training writes", path)
    try:
        trainer.restore(state)
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
        # The optimizer's or objective's state of another kind of run: restoring fails deep in torch.
        message = str(exc).splitlines()[0] if str(exc) else ""
        raise CheckpointError(f"cannot continue from it ({type(exc).__name__}: {message}); it was written by "
                              "another kind of run", path) from None


def _previous_stage_folder(job: FoldJob, configuration: ConfigurationPlan, case_ids: tuple[str, ...]) -> Path | None:
    """For a cascade stage, the folder of the previous stage's cross-validation predictions, checked complete."""
    if configuration.previous_stage is None:
        return None
    folder = next_stage_folder(sibling_run_folder(job.run_folder, configuration.name, configuration.previous_stage),
                               configuration.name)
    missing = [case for case in case_ids if not (folder / f"{case}.npy").is_file()]
    if missing:
        raise ConfigError(
            f"'{configuration.name}' takes the '{configuration.previous_stage}' stage's cross-validation predictions "
            f"as inputs, but {len(missing)} of {len(case_ids)} case(s) have none (e.g. {missing[0]}); train every "
            f"fold of it first: autounet train -d {job.results.name} -c {configuration.previous_stage} -f 0 "
            "(then 1, 2, 3, 4)", folder)
    return folder


def objective_name(recipe: TrainingRecipe, layout: OutputLayout) -> str:
    """The objective a run trains: the recipe's, except that plain segmentation of a dataset with several
    label maps is multi-task segmentation (so such a dataset needs no recipe of its own)."""
    if recipe.objective == "segmentation" and len(layout.tasks) > 1:
        return "multitask"
    return recipe.objective


def _with_recipe_network(plans: Plans, name: str, recipe: TrainingRecipe, layout: OutputLayout) -> Plans:
    """The plans with the recipe's network (if it names one) in the trained configuration, and the channels
    of each task where the dataset has several label maps. These plans go into the run folder, so prediction
    builds the network that was trained.

    Raises:
        ConfigError: The recipe names an unregistered network ("did you mean").
    """
    configuration = plans.configuration(name)
    network = configuration.network
    if recipe.network is not None:
        network_builder(recipe.network)  # an unknown name fails now, with a suggestion
        network = replace(network, kind=recipe.network)
    if len(layout.tasks) > 1:
        network = replace(network, task_outputs=tuple(task.scheme.num_outputs for task in layout.tasks))
    if network == configuration.network:
        return plans
    changed = replace(configuration, network=network)
    return replace(plans, configurations={**plans.configurations, name: changed})


def _load_plans(job: FoldJob) -> Plans:
    path = job.preprocessed / f"{job.plans_name}.json"
    if not path.is_file():
        raise ConfigError(f"no plans; run 'autounet plan-and-preprocess -d {job.preprocessed.name}' first", path)
    return load_plans(path)


def _prepare_output(job: FoldJob, recipe: TrainingRecipe, options: RunOptions, plans: Plans,
                    dataset: RawDataset, write: bool = True) -> None:
    # Every rank checks (so all fail alike); only ``write`` (rank 0) creates files.
    output = job.fold_folder
    recipe_file = output / "recipe.json"
    if options.resume and (output / "checkpoint_latest.pt").is_file():
        saved = load_dataclass(TrainingRecipe, recipe_file)
        if saved.fingerprint() != recipe.fingerprint():
            raise ConfigError("--continue with a different recipe than the run was started with; use the same "
                              "options (see recipe.json)", recipe_file)
        return
    if options.resume:
        # As nnU-Net: scripts that always pass --continue work after a kill before the first checkpoint.
        logger.warning("--continue: no checkpoint_latest.pt in %s yet; starting this fold from scratch", output)
    if (output / "checkpoint_latest.pt").is_file() or (output / "checkpoint_final.pt").is_file():
        raise CheckpointError("this fold was already trained or started; pass --continue to resume, or delete "
                              "the folder to start over", output)
    if not write:
        return
    output.mkdir(parents=True, exist_ok=True)
    save_dataclass(recipe_file, recipe)
    # The model folder describes itself: plans and dataset.json beside the folds.
    model_folder = output.parent
    save_plans(model_folder / "plans.json", plans)
    shutil.copyfile(dataset.root / "dataset.json", model_folder / "dataset.json")


def _setup_logging(path: Path, context: DistributedContext) -> None:
    if context.is_main:
        _attach_log_file(path)
    else:  # one log, from rank 0; other ranks report only problems
        logging.getLogger("autounet").setLevel(logging.WARNING)


def _attach_log_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger("autounet")
    if not any(isinstance(h, logging.FileHandler) and Path(h.baseFilename) == path.absolute()
               for h in root.handlers):
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        root.addHandler(handler)
        root.setLevel(min(root.level or logging.INFO, logging.INFO))


def _augmentation(configuration: ConfigurationPlan, recipe: TrainingRecipe) -> AugmentationConfig:
    """nnU-Net's augmentation for the configuration, with the recipe's overrides applied.

    Raises:
        ConfigError: An override names no augmentation setting or has the wrong type or value.
    """
    patch = tuple(configuration.patch_size)
    # Channels normalised inside the non-zero mask stay zero outside it after augmentation (nnU-Net).
    masked = tuple(i for i, n in enumerate(configuration.normalization) if n.use_nonzero_mask)
    augmentation = replace(default_augmentation(patch, configuration.ndim), masked_channels=masked)
    overrides = recipe.augmentation_overrides
    if not overrides:
        return augmentation
    fields = {**to_dict(augmentation), **overrides}
    if "sampling_patch_size" not in overrides:  # follows the (possibly overridden) rotation and in-plane mode
        fields["sampling_patch_size"] = list(compute_sampling_patch_size(
            patch, tuple(tuple(r) for r in fields["rotation_ranges"]), bool(fields["dummy_2d"])))
    return from_dict(AugmentationConfig, fields, where="recipe.augmentation_overrides")


AUTO_COMPILE_MIN_STEPS = 5000
"""Training steps below which automatic compilation is not worth it: compiling a 3D U-Net's forward and
backward takes minutes on a small CPU, and saves about 28% of each float32 step on AVX-512 CPUs."""


def _compiled(network: torch.nn.Module, configuration: ConfigurationPlan, recipe: TrainingRecipe,
              options: RunOptions, device: torch.device) -> torch.nn.Module:
    """The network as the trainer calls it: ``torch.compile``-d when asked, or automatically for long float32
    CPU runs where :func:`~autounet.devices.cpu_compile_speeds_up_float32` says it pays (there with
    channels-last weights, which is what makes it faster)."""
    fast_cpu = device.type == "cpu" and cpu_compile_speeds_up_float32(configuration.ndim)
    automatic = (fast_cpu and options.amp_dtype() is None
                 and recipe.epochs * recipe.iterations_per_epoch >= AUTO_COMPILE_MIN_STEPS)
    if not (options.compile or (options.compile is None and automatic)):
        return network
    if fast_cpu:
        network.to(memory_format=torch.channels_last_3d)
        logger.info("float32 on an AVX-512 CPU: training a channels-last, torch.compile-d network")
    elif device.type == "cpu" and torch.backends.cpu.get_cpu_capability() != "AVX512":
        # Measured with PyTorch's kernels limited to AVX2: the compiled step's loss was NaN.
        logger.warning("--compile on a CPU without AVX-512 kernels gave a NaN loss in autounet's measurements; "
                       "if the loss is NaN, train without --compile")
    return torch.compile(network)  # type: ignore[return-value]


def _use_fast_cpu_float32_parts(network: torch.nn.Module, configuration: ConfigurationPlan, options: RunOptions,
                                device: torch.device) -> None:
    """Eager float32 training on the CPU swaps two parts of the network for faster equivalents (same
    parameters, state dict and forward within float32 rounding):

    * instance norms computed by ``group_norm`` (:mod:`autounet.networks.group_norm`): half the time of the
      norm and in-place leaky ReLU, on any CPU;
    * where PyTorch's kernels stop at AVX2, 3D stride-1 convolutions take their weight gradients from stacked
      2D ones (:mod:`autounet.networks.weight_gradient`), which oneDNN computes with its ``jit:avx2`` kernels
      instead of an im2col fallback.
    """
    if device.type != "cpu" or options.amp_dtype() is not None:
        return
    norms = use_group_norm_instance_norms(network)
    convolutions = use_stacked_weight_gradient(network) if cpu_stacked_weight_gradient_speeds_up(
        configuration.ndim) else 0
    logger.info("float32 on the CPU: %d instance norms through group_norm, %d 3D convolutions with stacked "
                "weight gradients", norms, convolutions)


def _build_parts(configuration: ConfigurationPlan, augmentation: AugmentationConfig, objective: Objective,
                 data_folder: Path, train_cases: tuple, val_cases: tuple, recipe: TrainingRecipe,
                 options: RunOptions, context: DistributedContext, output: Path,
                 previous_stage: Path | None = None) -> TrainingParts:
    device = context.device
    # Data-parallel ranks share the plan's batch (nnU-Net), so the global batch is what was planned.
    batch_size, oversample = split_batch(configuration.batch_size, recipe.oversample_foreground, context)
    patch = tuple(configuration.patch_size)
    sampling_patch = tuple(augmentation.sampling_patch_size) if recipe.augmentation else patch
    train_sampler = PatchSampler(data_folder, train_cases, SamplerSettings(
        sampling_patch, batch_size, oversample, final_patch_size=patch), previous_stage)
    val_sampler = PatchSampler(data_folder, val_cases, SamplerSettings(patch, batch_size, oversample), previous_stage)
    in_channels = train_sampler.num_channels + objective.extra_input_channels
    if configuration.detection is not None and configuration.network.kind == "retina_unet":
        network: torch.nn.Module = build_planned_detector(configuration, in_channels).to(device)
    else:
        network = build_network(configuration.network, in_channels, objective.num_outputs,
                                deep_supervision=recipe.deep_supervision).to(device)
    trained = _compiled(network, configuration, recipe, options, device)
    if trained is network:  # compiled networks fuse these parts themselves
        _use_fast_cpu_float32_parts(network, configuration, options, device)
    trained = wrap_network(trained, context)
    seed = context.rank_seed(recipe.seed)  # batch i of epoch e differs between ranks
    augmenter = BatchAugmenter(augmentation, device) if recipe.augmentation else None
    # CPU: the loader's worker threads augment while the network trains; GPU: the trainer augments on the device.
    # Both seed step i of epoch e alike, so the batches are identical either way.
    loader_augment = augmenter if device.type == "cpu" else None
    return TrainingParts(
        network=trained, objective=objective.to(device), optimizer=build_optimizer(network, recipe),
        train_loader=BatchLoader(train_sampler, seed, options.num_workers, stream=0, augment=loader_augment),
        val_loader=BatchLoader(val_sampler, seed, options.num_workers, stream=1),
        augment=None if loader_augment is not None else augmenter, recipe=recipe, device=device, output=output,
        amp_dtype=options.amp_dtype(),
        callbacks=(MetricsFile(output / "metrics.json"),
                   ProgressPlot(output / "progress.png", objective.plotted_metrics)),
        show_progress=options.show_progress and context.is_main, distributed=context,
        run_metadata={"configuration": configuration.name, "recipe": to_dict(recipe), "recipe_name": recipe.name,
                      "recipe_hash": recipe.fingerprint(), "mirror_axes": list(augmentation.mirror_axes)})
