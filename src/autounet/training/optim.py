"""SGD with Nesterov momentum and the polynomial learning-rate schedule."""

from __future__ import annotations

import torch
from torch import nn

from autounet.training.recipe import TrainingRecipe

__all__ = ["build_optimizer", "poly_lr", "set_learning_rate"]


def build_optimizer(network: nn.Module, recipe: TrainingRecipe) -> torch.optim.Optimizer:
    """SGD, Nesterov momentum 0.99, weight decay 3e-5 (recipe values)."""
    return torch.optim.SGD(network.parameters(), lr=recipe.initial_lr, momentum=recipe.momentum,
                           weight_decay=recipe.weight_decay, nesterov=True)


def poly_lr(epoch: int, recipe: TrainingRecipe) -> float:
    """``initial_lr * (1 - epoch / epochs) ** exponent``: a pure function of the epoch, so resuming needs no
    scheduler state."""
    return recipe.initial_lr * (1 - epoch / recipe.epochs) ** recipe.poly_exponent


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set ``lr`` on every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr
