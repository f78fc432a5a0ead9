"""What a training run does (the recipe, part of the run's identity) and how it runs (run options)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import ClassVar

import torch

from autounet.devices import cpu_has_native_bf16
from autounet.io.serialization import to_dict

__all__ = ["RunOptions", "TrainingRecipe"]


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
    """

    SCHEMA_VERSION: ClassVar[int] = 1

    schema_version: int = 1
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

    def fingerprint(self) -> str:
        """Short hash identifying the recipe (resume refuses a different one)."""
        return hashlib.sha256(json.dumps(to_dict(self), sort_keys=True).encode()).hexdigest()[:8]


@dataclass(frozen=True)
class RunOptions:
    """How to run: never part of the plans or the recipe.

    Attributes:
        device: ``cpu``, ``cuda``, ``cuda:1`` or ``mps``.
        num_workers: Background loader threads.
        resume: Continue from ``checkpoint_latest.pt``.
        compile: Wrap the network in ``torch.compile``.
        save_probabilities: Keep softmax outputs of the final validation (for ensembling).
        validate: Run the final sliding-window validation.
        amp: Mixed precision; ``None`` means automatic: float16 on CUDA, bfloat16 on CPUs that compute it
            natively (AVX512-BF16/AMX, about twice as fast as float32 there), float32 otherwise.
        show_progress: Progress bars.
    """

    device: str = "cpu"
    num_workers: int = 2
    resume: bool = False
    compile: bool = False
    save_probabilities: bool = False
    validate: bool = True
    amp: bool | None = None
    show_progress: bool = True

    def use_amp(self) -> bool:
        """Whether mixed precision is on."""
        return self.amp_dtype() is not None

    def amp_dtype(self) -> torch.dtype | None:
        """The autocast dtype (``None``: float32 throughout)."""
        if self.amp is False:
            return None
        if self.device.startswith("cuda"):
            return torch.float16
        if self.device == "cpu" and (self.amp or cpu_has_native_bf16()):
            return torch.bfloat16
        return None

