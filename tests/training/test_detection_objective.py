"""The detection objective: targets from label maps, the loss, AP on validation patches, training through the
unchanged trainer (exact resume included), checkpoints, the recipe and final validation."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

from autounet.detection.boxes import box_iou, instances_to_boxes
from autounet.detection.retina_unet import RetinaUNet, build_retina_unet
from autounet.errors import ConfigError
from autounet.io.checkpoints import load_checkpoint, save_checkpoint
from autounet.networks.registry import network_builder
from autounet.networks.spec import UNetSpec
from autounet.training.callbacks import ProgressPlot
from autounet.training.detection_objective import DetectionObjective, boxes_from_label_maps
from autounet.training.objectives import ObjectiveContext, build_objective, objective_names
from autounet.training.recipe import TrainingRecipe, load_recipe
from autounet.training.trainer import Trainer, TrainingParts

SPEC_2D = UNetSpec(ndim=2, encoder="plain", features_per_stage=(4, 8, 16), kernel_sizes=((3, 3),) * 3,
                   strides=((1, 1), (2, 2), (2, 2)), blocks_per_stage=(1, 1, 1), convs_per_decoder_stage=(1, 1))
SPEC_3D = UNetSpec(ndim=3, encoder="plain", features_per_stage=(4, 8, 16), kernel_sizes=((3, 3, 3),) * 3,
                   strides=((1, 1, 1), (2, 2, 2), (2, 2, 2)), blocks_per_stage=(1, 1, 1),
                   convs_per_decoder_stage=(1, 1))


def _context(tmp_path: Path, num_classes: int = 1, recipe: TrainingRecipe | None = None) -> ObjectiveContext:
    # Only what the objective reads: the configuration's patch, batch and batch Dice, the foreground labels.
    configuration = SimpleNamespace(batch_dice=False, patch_size=(32, 32), batch_size=2)
    labels = SimpleNamespace(foreground_labels=tuple(range(1, num_classes + 1)))
    return ObjectiveContext(plans=None, configuration=configuration, labels=labels, dataset=None,  # type: ignore[arg-type]
                            data_folder=tmp_path, validation_cases=("case_0",), output=tmp_path,
                            recipe=recipe or load_recipe("detection"))


def _square_batch(batch: int, shape: tuple[int, ...], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One square object per image (class 1 stored as 2 in odd images), at a random place, plus noise."""
    rng = np.random.default_rng(seed)
    seg = np.zeros((batch, 2, *shape), dtype=np.int16)
    for index in range(batch):
        start = rng.integers(2, [s - 12 for s in shape])
        window = tuple(slice(int(a), int(a) + 10) for a in start)
        seg[(index, 0, *window)] = 1 + index % 2
        seg[(index, 1, *window)] = 1
    image = (seg[:, :1] > 0) + 0.1 * rng.standard_normal((batch, 1, *shape))
    return image.astype(np.float32), seg


def test_boxes_and_classes_come_from_the_semantic_and_instance_maps() -> None:
    semantic = torch.zeros(2, 8, 8, dtype=torch.int16)
    instances = torch.zeros(2, 8, 8, dtype=torch.int16)
    semantic[0, 1:3, 1:4], instances[0, 1:3, 1:4] = 1, 1  # class 0
    semantic[0, 5:8, 6:8], instances[0, 5:8, 6:8] = 3, 2  # class 2
    instances[0, 0, 0], semantic[0, 0, 0] = -1, -1  # padding
    targets = boxes_from_label_maps(semantic, instances)
    assert targets.boxes[0].tolist() == [[1, 1, 3, 4], [5, 6, 8, 8]]
    assert targets.classes[0].tolist() == [0, 2]
    assert targets.boxes[1].shape == (0, 4) and targets.classes[1].shape == (0,)


def test_prepare_needs_the_instance_channel(tmp_path: Path) -> None:
    objective = DetectionObjective(_context(tmp_path))
    with pytest.raises(ConfigError, match="semantic and an instance"):
        objective.prepare(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8, dtype=torch.int16))
    image, seg = _square_batch(2, (32, 32))
    _, targets = objective.prepare(torch.from_numpy(image), torch.from_numpy(seg))
    assert targets.segmentation.shape == (2, 1, 32, 32) and targets.segmentation.dtype == torch.int64
    assert int(targets.segmentation.sum()) == 200


def test_recipe_names_the_objective_and_the_network(tmp_path: Path) -> None:
    recipe = load_recipe("detection")
    assert (recipe.objective, recipe.network, recipe.deep_supervision) == ("detection", "retina_unet", False)
    assert "detection" in objective_names()
    assert isinstance(build_objective("detection", _context(tmp_path)), DetectionObjective)
    assert network_builder(recipe.network) is build_retina_unet
    bad = TrainingRecipe(objective="detection", loss_weights={"dice": 1.0, "boxes": 2.0})
    with pytest.raises(ConfigError, match="unknown loss term 'boxes'"):
        DetectionObjective(_context(tmp_path, recipe=bad))


def test_3d_loss_is_finite_and_reaches_every_part(tmp_path: Path) -> None:
    torch.manual_seed(0)
    objective = DetectionObjective(_context(tmp_path, num_classes=2))
    network = build_retina_unet(SPEC_3D, 1, num_classes=2)
    image, seg = _square_batch(2, (32, 32, 32))
    inputs, targets = objective.prepare(torch.from_numpy(image), torch.from_numpy(seg))
    assert [c.tolist() for c in targets.boxes.classes] == [[0], [1]]
    loss = objective.loss(network(inputs), targets)
    assert torch.isfinite(loss)
    loss.backward()
    for part in (network.unet.encoder, network.unet.heads, network.classification_head, network.regression_head):
        gradients = [p.grad for p in part.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in gradients)
        assert sum(float(g.abs().sum()) for g in gradients if g is not None) > 0


def test_one_image_is_learnt_to_ap_1(tmp_path: Path) -> None:
    torch.manual_seed(0)
    objective = DetectionObjective(_context(tmp_path))
    network = build_retina_unet(SPEC_2D, 1, num_classes=1)
    image, seg = _square_batch(1, (32, 32))
    inputs, targets = objective.prepare(torch.from_numpy(image), torch.from_numpy(seg))
    optimizer = torch.optim.Adam(network.parameters(), lr=3e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: more threads only contend on a shared machine
    try:
        for _ in range(60):
            optimizer.zero_grad()
            objective.loss(network(inputs), targets).backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    network.eval()
    found = network.detect(inputs)[0]
    assert len(found.boxes) >= 1 and found.scores[0] > 0.5
    assert float(box_iou(found.boxes[:1], targets.boxes.boxes[0])[0, 0]) > 0.5
    objective.reset_metric()
    with torch.no_grad():
        objective.update_metric(network(inputs), targets)
    metric = objective.epoch_metric(lambda values: values)
    assert metric.values["ap_0_1"] == pytest.approx(1.0) and metric.score == pytest.approx(1.0)


def test_an_epoch_without_objects_reports_ap_as_not_available(tmp_path: Path) -> None:
    torch.manual_seed(0)
    objective = DetectionObjective(_context(tmp_path))
    network = build_retina_unet(SPEC_2D, 1, num_classes=1)
    image, seg = _square_batch(1, (32, 32))
    inputs, targets = objective.prepare(torch.from_numpy(image), torch.from_numpy(np.zeros_like(seg)))
    objective.reset_metric()
    with torch.no_grad():
        objective.update_metric(network(inputs), targets)
    metric = objective.epoch_metric(lambda values: values)
    assert math.isnan(metric.values["ap_0_1"]) and metric.score is None
    assert metric.summary.startswith("AP@0.1 n/a (no object in this epoch's validation patches) (EMA n/a)")
    assert "nan" not in metric.summary


def test_checkpoint_round_trip_with_weights_only(tmp_path: Path) -> None:
    torch.manual_seed(0)
    network = build_retina_unet(SPEC_2D, 1, num_classes=2)
    objective = DetectionObjective(_context(tmp_path, num_classes=2))
    objective.step, objective.ema = 7, 0.25
    save_checkpoint(tmp_path / "model.pt", {"network": network.state_dict(), "tracker": objective.state_dict()})
    state = load_checkpoint(tmp_path / "model.pt")  # torch.load(weights_only=True) inside
    torch.manual_seed(1)
    restored = build_retina_unet(SPEC_2D, 1, num_classes=2)
    restored.load_state_dict(state["network"])
    other = DetectionObjective(_context(tmp_path, num_classes=2))
    other.load_state_dict(state["tracker"])
    assert (other.step, other.ema) == (7, 0.25)
    x = torch.randn(1, 1, 32, 32)
    network.eval(), restored.eval()
    with torch.no_grad():
        assert torch.equal(network(x).class_logits, restored(x).class_logits)
        assert torch.equal(network(x).seg_logits, restored(x).seg_logits)


class _Batches:
    """A loader stand-in: the same few detection batches every epoch."""

    augment = None

    def __init__(self, seed: int) -> None:
        self.batches = [_square_batch(2, (32, 32), seed * 10 + index) for index in range(2)]

    def epoch(self, epoch: int, iterations: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for index in range(iterations):
            yield self.batches[index % len(self.batches)]

    def close(self) -> None:
        pass


class _KilledError(Exception):
    pass


class _KillAfterFirstEpoch:
    def on_epoch_end(self, epoch: int, history: Any) -> None:
        raise _KilledError


def _trainer(tmp_path: Path, callbacks: tuple = ()) -> tuple[Trainer, RetinaUNet]:
    torch.manual_seed(0)
    recipe = TrainingRecipe(**{**load_recipe("detection").__dict__, "epochs": 2, "iterations_per_epoch": 3,
                               "validation_iterations": 2, "checkpoint_every": 1, "initial_lr": 0.01})
    network = build_retina_unet(SPEC_2D, 1, num_classes=2)
    objective = DetectionObjective(_context(tmp_path, num_classes=2, recipe=recipe))
    parts = TrainingParts(network=network, objective=objective,
                          optimizer=torch.optim.SGD(network.parameters(), lr=0.01, momentum=0.9, nesterov=True),
                          train_loader=_Batches(0), val_loader=_Batches(1),  # type: ignore[arg-type]
                          augment=None, recipe=recipe, device=torch.device("cpu"), output=tmp_path,
                          callbacks=callbacks, show_progress=False)
    return Trainer(parts), network


def test_trains_through_the_trainer_and_resumes_exactly(tmp_path: Path) -> None:
    straight, network = _trainer(tmp_path / "straight", (ProgressPlot(tmp_path / "straight" / "progress.png",
                                                                      DetectionObjective.plotted_metrics),))
    state = straight.fit()
    assert (tmp_path / "straight" / "progress.png").stat().st_size > 0
    assert len(state.history["ap_0_1"]) == 2 and all(np.isfinite(state.history["val_classification_loss"]))
    assert state.history["val_regression_loss"][0] >= 0

    killed, _ = _trainer(tmp_path / "resumed", (_KillAfterFirstEpoch(),))
    with pytest.raises(_KilledError):
        killed.fit()
    resumed, resumed_network = _trainer(tmp_path / "resumed")
    resumed.restore(load_checkpoint(tmp_path / "resumed" / "checkpoint_latest.pt"))
    resumed.fit()
    for (name, value), other in zip(network.state_dict().items(), resumed_network.state_dict().values(), strict=True):
        assert torch.equal(value, other), name
    assert resumed.state.history["train_loss"] == state.history["train_loss"]


def test_final_validation_predicts_whole_cases_through_the_sliding_window(tmp_path: Path) -> None:
    from autounet.detection.detections import Detections
    from autounet.io import ImageGeometry
    from autounet.preprocessing.properties import CaseProperties
    from autounet.preprocessing.storage import write_case

    seg = np.zeros((2, 48, 40), dtype=np.int16)
    seg[:, 20:30, 5:15] = 1  # one object of class 0, larger than half a window's overlap
    seg[0, 30:38, 25:33], seg[1, 30:38, 25:33] = 2, 2  # instance 2, class 1
    data = (seg[:1] > 0).astype(np.float32)
    properties = CaseProperties(
        schema_version=1, case_id="case_0", original_geometry=ImageGeometry.default(2), shape_before_crop=(48, 40),
        bbox_used_for_cropping=((0, 48), (0, 40)), shape_after_crop=(48, 40), spacing_after_resampling=(1.0, 1.0),
        shape_after_resampling=(48, 40))
    write_case(tmp_path / "data", data, seg, properties)

    class BrightBoxes(nn.Module):
        """A detector that boxes the bright regions of a patch exactly (class by size), sure of whole ones."""

        def detect(self, patches: torch.Tensor) -> list[Detections]:
            found = []
            for patch in patches:
                instances = torch.from_numpy(ndimage.label(patch[0].numpy() > 0.5)[0])
                boxes, _ = instances_to_boxes(instances)
                sizes = (boxes[:, 2:] - boxes[:, :2]).prod(dim=1)
                whole = ((boxes[:, :2] > 0) & (boxes[:, 2:] < torch.tensor(patch.shape[1:]))).all(dim=1)
                found.append(Detections(boxes.float(), torch.where(whole, 0.9, 0.3), (sizes < 80).long()))
            return found

    context = ObjectiveContext(
        plans=SimpleNamespace(axis_order=(0, 1)),  # type: ignore[arg-type]
        configuration=SimpleNamespace(batch_dice=False, patch_size=(32, 32), batch_size=2, detection=None),  # type: ignore[arg-type]
        labels=SimpleNamespace(foreground_labels=(1, 2)), dataset=SimpleNamespace(  # type: ignore[arg-type]
            description=SimpleNamespace(instance_classes={0: "big", 1: "small"})),
        data_folder=tmp_path / "data", validation_cases=("case_0",), output=tmp_path, recipe=load_recipe("detection"))
    summary = DetectionObjective(context).validate(BrightBoxes(), torch.device("cpu"))
    written = json.loads((tmp_path / "validation" / "summary.json").read_text())
    assert written["evaluated_on"] == "validation cases (sliding window)" == summary["evaluated_on"]
    assert written["AP_IoU_0.10_MaxDet_100"] == pytest.approx(1.0)
    boxes = json.loads((tmp_path / "validation" / "case_0_boxes.json").read_text())["boxes"]
    assert {b["label"] for b in boxes} >= {"big", "small"}
