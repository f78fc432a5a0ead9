"""Multi-task objective: per-task losses summed with weights, widened line targets, per-task pseudo-Dice."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from autounet.dataset.labels import LabelScheme, OutputLayout
from autounet.errors import ConfigError
from autounet.networks import build_network
from autounet.networks.spec import UNetSpec
from autounet.training.losses import build_loss
from autounet.training.multitask import MultiTaskLoss, MultiTaskObjective, dilate_lines, task_weights
from autounet.training.objectives import ObjectiveContext, build_objective
from autounet.training.recipe import TrainingRecipe
from autounet.training.run import objective_name

ZONES = LabelScheme(labels=(0, 1, 2, 3))
FRONT = LabelScheme(labels=(0, 1))
LAYOUT = OutputLayout.of_schemes({"zones": ZONES, "front": FRONT}, kinds={"front": "line"})
SPEC = UNetSpec(ndim=2, encoder="plain", features_per_stage=(4, 8), kernel_sizes=((3, 3),) * 2,
                strides=((1, 1), (2, 2)), blocks_per_stage=(1, 1), convs_per_decoder_stage=(1,))


def _objective(recipe: TrainingRecipe | None = None) -> MultiTaskObjective:
    context = ObjectiveContext(
        plans=None, configuration=SimpleNamespace(network=SPEC, batch_dice=False),  # type: ignore[arg-type]
        labels=ZONES, dataset=None, data_folder=Path("."), validation_cases=(),  # type: ignore[arg-type]
        output=Path("."), recipe=recipe or TrainingRecipe(), layout=LAYOUT)
    objective = build_objective("multitask", context)
    assert isinstance(objective, MultiTaskObjective)
    return objective


def test_dilate_lines_widens_the_line_over_background_only() -> None:
    seg = torch.zeros(1, 1, 7, 7, dtype=torch.long)
    seg[0, 0, 3, 1:6] = 1
    seg[0, 0, 0, 0] = 2  # another label is never overwritten
    widened = dilate_lines(seg, label=1, width=3)
    assert widened[0, 0, 2:5, 0:7].eq(1).sum() == 3 * 7
    assert widened[0, 0, 0, 0] == 2 and widened[0, 0, 1].eq(1).sum() == 0
    assert dilate_lines(seg, 1, 1) is seg
    even = dilate_lines(seg, label=1, width=4)
    assert even.shape == seg.shape


def test_task_weights_are_equal_by_default_and_must_name_tasks() -> None:
    assert task_weights(LAYOUT, {}) == (0.5, 0.5)
    assert task_weights(LAYOUT, {"front": 2.0}) == (0.5, 2.0)
    with pytest.raises(ConfigError, match="'fronts'"):
        task_weights(LAYOUT, {"fronts": 1.0})


def test_the_loss_is_the_weighted_sum_of_each_task_on_its_channels() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 8, 8)
    seg = torch.stack([torch.randint(0, 4, (2, 8, 8)), torch.randint(0, 2, (2, 8, 8))], dim=1)
    zones_loss, front_loss = build_loss(ZONES, False, None), build_loss(FRONT, False, None)
    combined = MultiTaskLoss(LAYOUT, [zones_loss, front_loss], (0.3, 0.7))(logits, seg)
    expected = 0.3 * zones_loss(logits[:, :4], seg[:, :1]) + 0.7 * front_loss(logits[:, 4:], seg[:, 1:])
    torch.testing.assert_close(combined, expected)


def test_objective_trains_both_tasks_with_deep_supervision() -> None:
    objective = _objective()
    assert objective.num_outputs == 6 and objective.extra_input_channels == 0
    network = build_network(SPEC, 1, objective.num_outputs, deep_supervision=True)
    seg = torch.zeros(2, 2, 16, 16, dtype=torch.int16)
    seg[:, 0, :, 8:] = 2
    seg[:, 1, :, 8] = 1
    seg[0, :, 0, 0] = -1  # padding counts as background
    image, targets = objective.prepare(torch.randn(2, 1, 16, 16), seg)
    assert targets.dtype == torch.long and targets.min() >= 0
    assert targets[:, 1].eq(1).sum() == 2 * 16 * 5  # the front widened to the default 5 pixels
    loss = objective.loss(network(image), targets)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in network.parameters())


def test_per_task_pseudo_dice_and_state_round_trip() -> None:
    objective = _objective(TrainingRecipe(line_width=1))
    seg = torch.zeros(1, 2, 8, 8, dtype=torch.long)
    seg[0, 0, :, 4:] = 1
    seg[0, 1, :, 4] = 1
    perfect = torch.zeros(1, 6, 8, 8)
    perfect[:, :4] = torch.nn.functional.one_hot(seg[:, 0], 4).permute(0, 3, 1, 2).float()
    perfect[:, 4:] = torch.nn.functional.one_hot(seg[:, 1], 2).permute(0, 3, 1, 2).float()
    objective.reset_metric()
    objective.update_metric([perfect], seg)
    metric = objective.epoch_metric(lambda values: values)
    assert metric.values["pseudo_dice"] == pytest.approx(1.0)
    assert metric.values["pseudo_dice_per_task"]["front"] == [pytest.approx(1.0)]
    restored = _objective(TrainingRecipe(line_width=1))
    restored.load_state_dict(objective.state_dict())
    assert restored.state_dict() == objective.state_dict()


def test_batches_must_hold_one_map_per_task() -> None:
    with pytest.raises(ConfigError, match="1 label map"):
        _objective().prepare(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8, dtype=torch.int16))


def test_plain_segmentation_of_several_maps_trains_as_multitask() -> None:
    single = OutputLayout.of_schemes({"labels": ZONES})
    assert objective_name(TrainingRecipe(), single) == "segmentation"
    assert objective_name(TrainingRecipe(), LAYOUT) == "multitask"
    assert objective_name(TrainingRecipe(objective="other"), LAYOUT) == "other"
