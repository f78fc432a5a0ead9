"""Object detection parts, one job per module, for 2D and 3D alike (boxes as in :mod:`.boxes`).

``boxes`` (IoU, GIoU, boxes from instance maps), ``anchors`` (anchor generator, anchor shapes fitted to a
dataset), ``coder`` (box <-> regression deltas), ``matcher`` (IoU and ATSS matchers, hard-negative
sampler), ``clustering`` (NMS, weighted box clustering), ``from_segmentation`` (boxes from a segmentation
model's probabilities, the baseline) and ``targets`` (boxes and classes of a training batch from its
semantic and instance maps). They import nothing downstream of ``networks``; the Retina U-Net that composes
them is built on top.
"""

from __future__ import annotations

from autounet.detection.anchors import AnchorGenerator, fit_anchor_sizes, mean_best_iou, shapes_from_sizes_and_scales
from autounet.detection.boxes import (
    box_centers,
    box_iou,
    box_sizes,
    box_volume,
    clip_boxes_to_image,
    flip_boxes,
    generalized_box_iou,
    generalized_box_iou_loss,
    instances_to_boxes,
    remove_small_boxes,
)
from autounet.detection.clustering import batched_nms, batched_weighted_box_clustering, nms, weighted_box_clustering
from autounet.detection.coder import BoxCoder
from autounet.detection.from_segmentation import segmentation_to_boxes
from autounet.detection.matcher import (
    BELOW_LOW_THRESHOLD,
    BETWEEN_THRESHOLDS,
    ATSSMatcher,
    HardNegativeSampler,
    Matcher,
)
from autounet.detection.targets import boxes_from_maps, instance_classes

__all__ = [
    "BELOW_LOW_THRESHOLD",
    "BETWEEN_THRESHOLDS",
    "ATSSMatcher",
    "AnchorGenerator",
    "BoxCoder",
    "HardNegativeSampler",
    "Matcher",
    "batched_nms",
    "batched_weighted_box_clustering",
    "box_centers",
    "box_iou",
    "box_sizes",
    "box_volume",
    "boxes_from_maps",
    "clip_boxes_to_image",
    "fit_anchor_sizes",
    "flip_boxes",
    "generalized_box_iou",
    "generalized_box_iou_loss",
    "instance_classes",
    "instances_to_boxes",
    "mean_best_iou",
    "nms",
    "remove_small_boxes",
    "segmentation_to_boxes",
    "shapes_from_sizes_and_scales",
    "weighted_box_clustering",
]
