"""What a training run does (the recipe, part of the run's identity) and how it runs (run options)."""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from autounet.devices import cpu_has_native_bf16
from autounet.errors import ConfigError
from autounet.io.jsonio import read_json
from autounet.io.serialization import from_dict, to_dict

if TYPE_CHECKING:  # the CLI reads recipe defaults for its help without importing torch
    import torch

__all__ = ["BUILTIN_RECIPES", "RunOptions", "TrainingRecipe", "load_recipe"]


@dataclass(frozen=True)
class TrainingRecipe:
    """Hyper-parameters of a training run; nnU-Net v2's defaults.

    Attributes:
        schema_version: Version of this file layout.
        name: Recipe name, recorded in logs.
        epochs: Number of epochs.
        iterations_per_epoch: Training steps per epoch.
        validation_iterations: Validation batches per epoch (pseudo-Dice).
        initial_lr: SGD learning rate at epoch 0.
        momentum: SGD (Nesterov) momentum.
        weight_decay: L2 weight decay.
        poly_exponent: ``lr = initial_lr * (1 - epoch / epochs) ** poly_exponent``.
        grad_clip_norm: Gradient-norm clipping threshold.
        oversample_foreground: Fraction of each batch forced to contain foreground.
        checkpoint_every: Save ``checkpoint_latest.pt`` every this many epochs (and always at the end).
        deep_supervision: Train with the deep-supervision loss.
        augmentation: Apply the augmentation pipeline (off only for debugging).
        seed: Seed of every random draw (sampling, augmentation, initialisation).
        objective: Registered training objective (:mod:`autounet.training.objectives`): what is learnt,
            how it is scored, how the final validation runs.
        network: Registered network to build instead of the one the plan names; ``None``: the plan's.
        loss_weights: Weights of the objective's loss terms by name; terms not named keep weight 1. For
            segmentation: ``dice`` and ``ce`` (the cross-entropy, or binary cross-entropy for regions).
        augmentation_overrides: Fields of the augmentation settings
            (:class:`~autounet.data.augmentation.AugmentationConfig`) replacing the configuration's
            defaults, e.g. ``{"mirror_axes": []}`` to train (and predict) without mirroring.
        task_weights: For a dataset with several label maps: each task's weight in the summed loss, by task
            name; tasks not named weigh ``1 / number of tasks`` (equal weights summing to 1, 0.5 each for two
            tasks as in the glacier-front work).
        line_width: Width in voxels to which the labels of line tasks (``"kind": "line"``) are dilated for
            training (a one-voxel line is too thin a target); predictions are thinned back to a line. 1 trains
            on the line itself.
    """

    SCHEMA_VERSION: ClassVar[int] = 2

    schema_version: int = 2
    name: str = "default"
    epochs: int = 1000
    iterations_per_epoch: int = 250
    validation_iterations: int = 50
    initial_lr: float = 0.01
    momentum: float = 0.99
    weight_decay: float = 3e-5
    poly_exponent: float = 0.9
    grad_clip_norm: float = 12.0
    oversample_foreground: float = 0.33
    checkpoint_every: int = 50
    deep_supervision: bool = True
    augmentation: bool = True
    seed: int = 12345
    objective: str = "segmentation"
    network: str | None = None
    loss_weights: dict[str, float] = field(default_factory=dict)
    augmentation_overrides: dict[str, Any] = field(default_factory=dict)
    task_weights: dict[str, float] = field(default_factory=dict)
    line_width: int = 5

    def __post_init__(self) -> None:
        if not _RECIPE_NAME.fullmatch(self.name) or "__" in self.name:
            raise ValueError(f"recipe name '{self.name}' must be letters, digits, '.', '-' or single '_' (it names "
                             "the run folder)")
        for name in ("epochs", "iterations_per_epoch", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.validation_iterations < 0:
            raise ValueError(f"validation_iterations must be >= 0, got {self.validation_iterations}")
        if not 0 <= self.oversample_foreground <= 1:
            raise ValueError(f"oversample_foreground must lie in [0, 1], got {self.oversample_foreground}")
        if any(not weight >= 0 for weight in self.loss_weights.values()):
            raise ValueError(f"loss weights must be >= 0, got {self.loss_weights}")
        if any(not weight >= 0 for weight in self.task_weights.values()):
            raise ValueError(f"task weights must be >= 0, got {self.task_weights}")
        if self.line_width < 1:
            raise ValueError(f"line_width must be >= 1, got {self.line_width}")
        self._check_bounds()

    def _check_bounds(self) -> None:
        """Numbers a recipe file may hold but no run means: NaN or infinite rates, a momentum of 5, seeds torch
        cannot take, dilation widths that allocate gigabytes, counts that overflow C integers."""
        finite = {"initial_lr": (self.initial_lr > 0, "> 0"), "weight_decay": (self.weight_decay >= 0, ">= 0"),
                  "poly_exponent": (self.poly_exponent >= 0, ">= 0"),
                  "grad_clip_norm": (self.grad_clip_norm > 0, "> 0"), "momentum": (0 <= self.momentum < 1, "in [0, 1)")}
        for name, (in_range, wanted) in finite.items():
            if not (in_range and math.isfinite(getattr(self, name))):
                raise ValueError(f"{name} must be a finite number {wanted}, got {getattr(self, name)}")
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"seed must lie in 0..{2**32 - 1}, got {self.seed}")
        if self.line_width > MAX_LINE_WIDTH:
            raise ValueError(f"line_width must be at most {MAX_LINE_WIDTH}, got {self.line_width}")
        for name in ("epochs", "iterations_per_epoch", "validation_iterations", "checkpoint_every"):
            if getattr(self, name) > 2**31 - 1:
                raise ValueError(f"{name} must be at most {2**31 - 1}, got {getattr(self, name)}")

    def fingerprint(self) -> str:
        """Short hash identifying the recipe (resume refuses a different one).

        The schema version is not part of a recipe's identity, and fields added after version 1 count only
        when they differ from their defaults, so runs started by an older autounet keep their fingerprint.
        """
        data = to_dict(self)
        data["schema_version"] = 1
        for name, default in _ADDED_AFTER_VERSION_1.items():
            if data[name] == default:
                del data[name]
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:8]


# Line labels are dilated with a window this wide; wider is a typo (and allocates width**ndim per voxel window).
MAX_LINE_WIDTH = 256
_RECIPE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_ADDED_AFTER_VERSION_1: dict[str, Any] = {"objective": "segmentation", "network": None, "loss_weights": {},
                                          "augmentation_overrides": {}, "task_weights": {}, "line_width": 5}

BUILTIN_RECIPES: dict[str, dict[str, Any]] = {
    "default": {},
    # nnU-Net's nnUNetTrainer_noMirroring: neither training augmentation nor test-time augmentation mirrors.
    "no_mirroring": {"augmentation_overrides": {"mirror_axes": []}},
    # Retina U-Net (nnDetection's detector): box heads on the U-Net, trained on the plan's detection configuration.
    # One segmentation output at full resolution, so no deep supervision; terms: see training.detection_objective.
    # Labels move by nearest neighbour, so the semantic and instance maps stay in step voxel for voxel.
    "detection": {"objective": "detection", "network": "retina_unet", "deep_supervision": False,
                  "loss_weights": {"classification": 1.0, "regression": 1.0, "ce": 1.0, "dice": 1.0},
                  "augmentation_overrides": {"seg_linear_interpolation": False}},
    # Several label maps: a shared encoder and one decoder per task (late branching, one decoder with a head
    # per task, is what the default recipe trains on such a dataset).
    "early_branching": {"network": "unet_early_branching"},
}
"""Recipes that need no file: name -> fields differing from :class:`TrainingRecipe`'s defaults."""


def load_recipe(name_or_file: str | os.PathLike) -> TrainingRecipe:
    """A named recipe: a built-in name (:data:`BUILTIN_RECIPES`) or a JSON file.

    A recipe file holds any fields of :class:`TrainingRecipe` and optionally ``"inherits_from"``: a built-in
    name or another recipe file (relative to this one), whose fields this file overrides, as configurations
    inherit in plans. Its ``name`` defaults to the file name without ``.json``. Example::

        {"schema_version": 2, "inherits_from": "default", "epochs": 250, "loss_weights": {"dice": 2.0}}

    Raises:
        ConfigError: Unknown name, unreadable file, unknown or mistyped field, inheritance cycle.
    """
    fields = _resolve(str(name_or_file), Path.cwd(), ())
    return from_dict(TrainingRecipe, {"schema_version": TrainingRecipe.SCHEMA_VERSION, **fields},
                     source=name_or_file if Path(name_or_file).suffix == ".json" else None)


def _resolve(reference: str, base: Path, seen: tuple[str, ...]) -> dict[str, Any]:
    """Fields of a recipe with its ancestors' fields underneath (``schema_version`` dropped)."""
    path = (base / reference) if Path(reference).suffix == ".json" else None
    if path is None:
        if reference not in BUILTIN_RECIPES:
            close = difflib.get_close_matches(reference, BUILTIN_RECIPES, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"built-in: {', '.join(sorted(BUILTIN_RECIPES))}"
            raise ConfigError(f"unknown recipe '{reference}': give a recipe .json file or a built-in name ({hint})")
        return {"name": reference, **copy.deepcopy(BUILTIN_RECIPES[reference])}
    key = str(path.resolve())
    if key in seen:
        raise ConfigError("recipes inherit from each other in a cycle", path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise ConfigError("a recipe file must hold a JSON object", path)
    data = dict(data)
    data.pop("schema_version", None)
    parent = data.pop("inherits_from", "default")
    if not isinstance(parent, str):
        raise ConfigError("'inherits_from' must be a recipe name or file", path)
    inherited = _resolve(parent, path.parent, (*seen, key))
    return {**inherited, "name": path.name.removesuffix(".json"), **data}


@dataclass(frozen=True)
class RunOptions:
    """How to run: never part of the plans or the recipe.

    Attributes:
        device: ``cpu``, ``cuda``, ``cuda:1`` or ``mps``.
        num_workers: Background loader threads.
        resume: Continue from ``checkpoint_latest.pt``.
        compile: Wrap the network in ``torch.compile`` (channels-last on the CPU where that was measured to
            help); ``None``: automatic, on for long float32 runs of 3D networks on AVX-512 CPUs
            (:func:`~autounet.devices.cpu_compile_speeds_up_float32`, at least ``AUTO_COMPILE_MIN_STEPS``
            steps, so that the compilation is repaid).
        save_probabilities: Keep softmax outputs of the final validation (for ensembling).
        validate: Run the final sliding-window validation.
        amp: Mixed precision; ``None`` means automatic: float16 on CUDA, bfloat16 on CPUs that compute it
            natively (AVX512-BF16/AMX, about twice as fast as float32 there), float32 otherwise.
        show_progress: Progress bars.
    """

    device: str = "cpu"
    num_workers: int = 2
    resume: bool = False
    compile: bool | None = None
    save_probabilities: bool = False
    validate: bool = True
    amp: bool | None = None
    show_progress: bool = True

    def use_amp(self) -> bool:
        """Whether mixed precision is on."""
        return self.amp_dtype() is not None

    def amp_dtype(self) -> torch.dtype | None:
        """The autocast dtype (``None``: float32 throughout)."""
        import torch

        if self.amp is False:
            return None
        if self.device.startswith("cuda"):
            return torch.float16
        if self.device == "cpu" and (self.amp or cpu_has_native_bf16()):
            return torch.bfloat16
        return None

