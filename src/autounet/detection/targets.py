"""Training targets of a detector from the label maps of a batch, derived after augmentation.

A detection configuration stores two label maps per case (see :mod:`autounet.preprocessing.dataset`):
channel 0 the semantic map (0 background, class ``c`` as ``c + 1``), channel 1 the instance ids. The loader
cuts and augments both like any labels, so the boxes are derived from the transformed maps here, exactly
(:func:`autounet.detection.boxes.instances_to_boxes`): an instance moved, flipped, rotated or cut by the
patch border has the box of what is left of it, and one cut away entirely has none. Negative values
(outside the image, padding) are background.
"""

from __future__ import annotations

import numpy as np
import torch

from autounet.detection.boxes import instances_to_boxes

__all__ = ["boxes_from_maps", "instance_classes"]


def instance_classes(semantic: np.ndarray, instances: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """The class (from 0) of each instance: the most frequent positive semantic value on its voxels, minus 1.

    The majority rather than any one voxel, because labels resampled separately (each map by its own
    interpolation rule) may disagree on a border voxel; ties go to the smaller class.

    Args:
        semantic: Integer ``(*spatial)`` semantic map.
        instances: Integer ``(*spatial)`` instance map of the same shape.
        ids: The instance ids to classify (each present in ``instances``).

    Returns:
        int64 ``(len(ids),)`` classes; -1 for an instance none of whose voxels has a positive semantic value.
    """
    classes = np.full(len(ids), -1, dtype=np.int64)
    if not len(ids):
        return classes
    inside = (instances > 0) & (semantic > 0)
    pairs = np.stack([instances[inside], semantic[inside]], axis=1).astype(np.int64)
    if not len(pairs):
        return classes
    unique, counts = np.unique(pairs, axis=0, return_counts=True)  # sorted by id, then by semantic value
    for row, instance in enumerate(np.asarray(ids, dtype=np.int64)):
        of_instance = unique[:, 0] == instance
        if of_instance.any():
            # argmax takes the first maximum: the smallest semantic value among the most frequent
            classes[row] = unique[of_instance, 1][np.argmax(counts[of_instance])] - 1
    return classes


def boxes_from_maps(semantic: torch.Tensor | np.ndarray, instances: torch.Tensor | np.ndarray
                    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Boxes and classes of every batch element from its semantic and instance maps.

    Args:
        semantic: ``(B, *spatial)`` integer semantic maps (the batch's label channel 0), 2D or 3D.
        instances: ``(B, *spatial)`` integer instance maps (label channel 1), same shape.

    Returns:
        One ``(boxes, classes)`` per batch element: float32 ``(N, 2 * ndim)`` half-open boxes in voxels of
        the patch (:mod:`autounet.detection.boxes`) in increasing instance-id order, and int64 ``(N,)``
        classes counting from 0. Instances without a positive semantic voxel are left out. On the CPU;
        move them to the model's device as needed.

    Raises:
        ValueError: Shapes that differ or are not ``(B, Y, X)`` / ``(B, Z, Y, X)``.
    """
    semantic_np = _numpy(semantic)
    instances_np = _numpy(instances)
    if semantic_np.shape != instances_np.shape or semantic_np.ndim not in (3, 4):
        raise ValueError(f"need semantic and instance maps of one shape (B, *spatial) with 2 or 3 spatial axes, "
                         f"got {semantic_np.shape} and {instances_np.shape}")
    targets = []
    for sem, ins in zip(semantic_np, instances_np, strict=True):
        ins = np.where(ins > 0, ins, 0)  # padding and outside-the-image (-1) count as background
        boxes, ids = instances_to_boxes(ins)
        classes = instance_classes(sem, ins, ids.numpy())
        keep = torch.from_numpy(classes >= 0)
        targets.append((boxes[keep], torch.from_numpy(classes)[keep]))
    return targets


def _numpy(array: torch.Tensor | np.ndarray) -> np.ndarray:
    return array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
