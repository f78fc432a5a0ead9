"""The detection objective: training a Retina U-Net (:mod:`autounet.detection.retina_unet`) on boxes.

A detection dataset's loader batches carry two label channels, ``(B, 2, *patch)`` int16: the semantic map
(0 background, class ``c`` stored as ``c + 1``) and the instance map (0 background, ``1..N`` instances). The
boxes are derived from the instance map *after* augmentation, so they are exact for whatever the spatial
transforms did; an instance's class is the semantic value on it minus one.

The loss is ``w_cls * classification + w_reg * regression + (w_ce * CE + w_dice * Dice)`` of the auxiliary
foreground segmentation head; the weights are the recipe's ``loss_weights`` (``classification``,
``regression``, ``ce``, ``dice``; 1 when not named). With the plan's ``class_segmentation`` the auxiliary head
segments the semantic map and the validation boxes' classes take its evidence. Each validation epoch scores AP
at IoU 0.1 (nnDetection's main metric) over the validation patches; its moving average picks the best
checkpoint. The final validation predicts the whole validation cases through the sliding window, writes their
boxes and ``validation/summary.json``, and sweeps the inference parameters on them
(:mod:`autounet.training.detection_sweep`) into the fold's ``detection_inference.json``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from autounet.detection.box_files import box_file_name, write_boxes_json
from autounet.detection.detections import Detector, fusion_settings
from autounet.detection.inference_parameters import INFERENCE_PARAMETERS_FILE, save_swept_inference
from autounet.detection.losses import BoxTargets, DetectionLoss
from autounet.detection.retina_unet import (
    PostprocessSettings,
    RetinaUNet,
    RetinaUNetOutput,
    postprocess_detections,
    window_settings,
)
from autounet.detection.targets import boxes_from_maps
from autounet.errors import ConfigError
from autounet.evaluation.detection import ImageDetections, evaluate_detections
from autounet.inference.box_prediction import boxes_to_original, collect_window_detections
from autounet.inference.sliding_window import SlidingWindowSettings
from autounet.io.jsonio import nan_to_none, write_json
from autounet.io.serialization import to_dict
from autounet.planning.plans import DetectionInference
from autounet.preprocessing.storage import load_case
from autounet.progress import progress
from autounet.training.detection_sweep import SweepCase, raw_window_settings, sweep_inference_parameters
from autounet.training.losses import DiceCELoss
from autounet.training.objectives import EpochMetric, ObjectiveContext, SumOverRanks, register_objective

__all__ = ["DETECTION_LOSS_TERMS", "DetectionObjective", "DetectionTargets", "boxes_from_label_maps"]

logger = logging.getLogger(__name__)

DETECTION_LOSS_TERMS = ("classification", "regression", "ce", "dice")
"""Names of the detection loss terms a recipe's ``loss_weights`` may weight."""

_EMA_MOMENTUM = 0.9  # as the segmentation objective's pseudo-Dice average
_SAMPLER_STREAM = 3  # random stream of the anchor sampler (loader streams: 0 training, 1 validation)
_FINAL_VALIDATION_STREAM = 4


@dataclass(frozen=True)
class DetectionTargets:
    """Loss targets of a detection batch.

    Attributes:
        boxes: Boxes and classes (from 0) per image.
        segmentation: ``(B, 1, *spatial)`` int64 map for the segmentation head: the semantic map (0 background,
            class ``c`` as ``c + 1``) for a class segmentation head, else foreground (1 on any object).
    """

    boxes: BoxTargets
    segmentation: Tensor


def boxes_from_label_maps(semantic: Tensor, instances: Tensor) -> BoxTargets:
    """Boxes and classes of every image of a batch from its semantic and instance maps
    (:func:`autounet.detection.targets.boxes_from_maps`: exact half-open boxes, each instance's majority class),
    as the loss's targets."""
    pairs = boxes_from_maps(semantic, instances)
    return BoxTargets([boxes.to(semantic.device) for boxes, _ in pairs],
                      [classes.to(semantic.device) for _, classes in pairs])


@register_objective("detection")
class DetectionObjective:
    """Retina U-Net training: anchor classification and box regression plus the auxiliary segmentation.

    Args:
        context: The run; the network is the plan's ``retina_unet`` (the ``detection`` recipe names it).
        detection_loss: Matcher, sampler, coder and the two head losses; ``None``: :class:`DetectionLoss`
            defaults (ATSS, hard negatives, BCE, GIoU).
        postprocess: Box decoding for the validation AP; ``None``: :class:`PostprocessSettings` defaults.
    """

    metric_names = ("ap_0_1", "ap_0_1_ema", "val_classification_loss", "val_regression_loss",
                    "val_segmentation_loss")
    plotted_metrics = (("ap_0_1", "AP@IoU0.1"), ("ap_0_1_ema", "AP@IoU0.1 (EMA)"),
                       ("val_classification_loss", "classification loss"), ("val_regression_loss", "regression loss"))

    def __init__(self, context: ObjectiveContext, detection_loss: DetectionLoss | None = None,
                 postprocess: PostprocessSettings | None = None) -> None:
        self.context = context
        weights = dict(context.recipe.loss_weights)
        unknown = sorted(set(weights) - set(DETECTION_LOSS_TERMS))
        if unknown:
            raise ConfigError(f"unknown loss term '{unknown[0]}' in the recipe's loss_weights; detection has "
                              f"{', '.join(DETECTION_LOSS_TERMS)}")
        self.weights = {term: float(weights.get(term, 1.0)) for term in DETECTION_LOSS_TERMS}
        self.num_classes = len(context.labels.foreground_labels)
        self.detection_loss = detection_loss or DetectionLoss()
        self.segmentation_loss = DiceCELoss(context.configuration.batch_dice, self.weights["ce"],
                                            self.weights["dice"])
        detection = getattr(context.configuration, "detection", None)  # None: no plan says so (a bare context)
        self.class_segmentation = detection is not None and detection.class_segmentation
        self.postprocess = postprocess or PostprocessSettings(class_evidence=self.class_segmentation)
        self.step = 0
        self.ema: float | None = None
        self.reset_metric()

    @property
    def extra_input_channels(self) -> int:
        """No input channels besides the image's."""
        return 0

    @property
    def num_outputs(self) -> int:
        """Foreground classes of the boxes (the classification head's outputs per anchor)."""
        return self.num_classes

    def to(self, device: torch.device) -> DetectionObjective:
        """Move the segmentation loss to ``device`` (the detection loss holds no tensors)."""
        self.segmentation_loss.to(device)
        return self

    def prepare(self, image: Tensor, seg: Tensor) -> tuple[Tensor, DetectionTargets]:
        """The image, and boxes, classes and foreground map from the batch's semantic and instance channels."""
        if seg.ndim < 4 or seg.shape[1] != 2:
            raise ConfigError(f"detection batches need a semantic and an instance label channel, got label shape "
                              f"{tuple(seg.shape)}; was the dataset preprocessed with instance labels?")
        semantic, instances = seg[:, 0], seg[:, 1]
        # Patches reaching past the image carry -1 there: background for either head.
        segmentation = semantic.long().clamp(min=0) if self.class_segmentation else (semantic > 0).long()
        return image, DetectionTargets(boxes_from_label_maps(semantic, instances), segmentation.unsqueeze(1))

    def _terms(self, outputs: RetinaUNetOutput, targets: DetectionTargets) -> tuple[Tensor, Tensor, Tensor]:
        # The sampler draws from a generator seeded by the run's seed and a step counter kept in the
        # checkpoints, so a resumed run samples the same anchors as an uninterrupted one.
        seed = int(np.random.default_rng([self.context.recipe.seed, _SAMPLER_STREAM, self.step]).integers(2**62))
        self.step += 1
        terms = self.detection_loss(outputs, targets.boxes, torch.Generator().manual_seed(seed))
        segmentation = self.segmentation_loss(outputs.seg_logits, targets.segmentation)
        return terms.classification, terms.regression, segmentation

    def loss(self, outputs: RetinaUNetOutput, targets: DetectionTargets) -> Tensor:
        """Weighted classification and regression losses plus the segmentation head's Dice + CE."""
        classification, regression, segmentation = self._terms(outputs, targets)
        return (self.weights["classification"] * classification + self.weights["regression"] * regression
                + segmentation)

    def reset_metric(self) -> None:
        """Forget the previous epoch's detections and loss sums (the moving average stays)."""
        self.images: list[ImageDetections] = []
        self.loss_sums = [0.0, 0.0, 0.0]
        self.batches = 0

    @torch.no_grad()
    def update_metric(self, outputs: RetinaUNetOutput, targets: DetectionTargets) -> None:
        """Decode the batch's boxes for the epoch's AP and add its loss terms to the epoch's sums."""
        for index, value in enumerate(self._terms(outputs, targets)):
            self.loss_sums[index] += float(value)
        self.batches += 1
        self.images += _image_detections(outputs, targets, self.detection_loss, self.postprocess)

    def _ap(self) -> float:
        if not any(len(image.gt_boxes) for image in self.images):
            return math.nan
        return evaluate_detections(self.images, classes=range(self.num_classes)).ap_at_0_1

    def epoch_metric(self, sum_over_ranks: SumOverRanks) -> EpochMetric:
        """AP at IoU 0.1 over the epoch's validation patches, its moving average as the score, and the mean
        validation loss terms. Under data parallelism the AP is the mean of the ranks' APs weighted by their
        patch counts (each rank matched only its own patches)."""
        ap = self._ap()
        patches = len(self.images) if not math.isnan(ap) else 0
        totals = sum_over_ranks([ap * patches if patches else 0.0, float(patches), *self.loss_sums,
                                 float(self.batches)])
        ap = totals[0] / totals[1] if totals[1] else math.nan
        means = [value / totals[5] if totals[5] else math.nan for value in totals[2:5]]
        if not math.isnan(ap):
            self.ema = ap if self.ema is None else _EMA_MOMENTUM * self.ema + (1 - _EMA_MOMENTUM) * ap
        values = {"ap_0_1": ap, "ap_0_1_ema": self.ema, "val_classification_loss": means[0],
                  "val_regression_loss": means[1], "val_segmentation_loss": means[2]}
        # No object in any validation patch of the epoch: AP is undefined, and a bare "nan" reads as a failure.
        measured = "n/a (no object in this epoch's validation patches)" if math.isnan(ap) else f"{ap:.4f}"
        average = "n/a" if self.ema is None else f"{self.ema:.4f}"
        return EpochMetric(values=values, score=self.ema,
                           summary=f"AP@0.1 {measured} (EMA {average}), classification {means[0]:.4f}, "
                                   f"regression {means[1]:.4f}")

    def state_dict(self) -> dict[str, Any]:
        """The sampler's step counter and the AP's moving average."""
        return {"step": self.step, "ap_ema": self.ema}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s state."""
        self.step = int(state["step"])
        self.ema = None if state["ap_ema"] is None else float(state["ap_ema"])

    @torch.no_grad()
    def validate(self, network: nn.Module, device: torch.device) -> dict[str, Any]:
        """Whole validation cases through the sliding window (mirroring as trained, windows fused by weighted
        box clustering, the plan's inference parameters): each case's boxes written as
        ``validation/<case>_boxes.json`` in its original grid, and AP at IoU 0.1, mAP and FROC against the
        boxes of its instances (scored in the preprocessed grid: IoU does not change under the per-axis scaling
        and shift that leads back to the original one) in ``validation/summary.json``. Then the inference
        parameters are swept on the same predictions (:mod:`autounet.training.detection_sweep`) and the choice
        is written as the fold's ``detection_inference.json``, which ``autounet predict`` uses."""
        context = self.context
        configuration = context.configuration
        detection = configuration.detection
        defaults = detection.inference if detection is not None else DetectionInference()
        detect = _candidate_detector(network, raw_window_settings(defaults, self.class_segmentation))
        settings = SlidingWindowSettings(patch_size=tuple(configuration.patch_size), mirror_axes=context.mirror_axes)
        network.eval()
        output = context.output / "validation"
        cases: list[SweepCase] = []
        images: list[ImageDetections] = []
        for case_id in progress(context.validation_cases, "Final validation", total=len(context.validation_cases)):
            data, seg, properties = load_case(context.data_folder, case_id, mmap=False)
            windows = collect_window_detections([detect], torch.from_numpy(data), settings, device)
            ((boxes, classes),) = boxes_from_maps(torch.from_numpy(seg[0:1]), torch.from_numpy(seg[1:2]))
            cases.append(SweepCase(windows, boxes.numpy(), classes.numpy()))
            found = windows.fuse(fusion_settings(defaults), window_settings(defaults))
            images.append(ImageDetections(found.boxes.numpy(), found.scores.numpy(), found.classes.numpy(),
                                          boxes.numpy(), classes.numpy()))
            write_boxes_json(output / box_file_name(case_id),
                             boxes_to_original(found, properties, context.plans.axis_order),
                             context.dataset.description.instance_classes)
        metrics = evaluate_detections(images, classes=range(self.num_classes))
        swept = sweep_inference_parameters(cases, defaults, self.num_classes)
        save_swept_inference(context.output / INFERENCE_PARAMETERS_FILE, swept)
        summary = {"evaluated_on": "validation cases (sliding window)", "validation_cases":
                   list(context.validation_cases), **metrics.to_json_dict(),
                   "swept_inference": {"AP_IoU_0.10_swept": swept.ap_swept,
                                       "parameters": to_dict(swept.parameters)}}
        write_json(output / "summary.json", nan_to_none(summary))
        logger.info("final validation: AP@0.1 %.4f, FROC score %.4f; swept inference parameters: AP@0.1 %s",
                    metrics.ap_at_0_1, metrics.froc_score,
                    "n/a" if swept.ap_swept is None else f"{swept.ap_swept:.4f}")
        return summary


def _candidate_detector(network: nn.Module, raw: PostprocessSettings) -> Detector:
    """A Retina U-Net decoding every candidate box the sweep may keep; any other detector's own ``detect``."""
    if isinstance(network, RetinaUNet):
        return lambda patches: postprocess_detections(network(patches), network.coder, raw)
    return network.detect  # type: ignore[attr-defined, return-value]


def _image_detections(outputs: RetinaUNetOutput, targets: DetectionTargets, loss: DetectionLoss,
                      settings: PostprocessSettings) -> list[ImageDetections]:
    detections = postprocess_detections(outputs, loss.coder, settings)
    return [ImageDetections(found.boxes.cpu().numpy(), found.scores.cpu().numpy(), found.classes.cpu().numpy(),
                            boxes.cpu().numpy(), classes.cpu().numpy())
            for found, boxes, classes in zip(detections, targets.boxes.boxes, targets.boxes.classes, strict=True)]

