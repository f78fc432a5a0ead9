"""Export class by class, softmax in slabs: identical to resampling all logits at once (nnU-Net's order)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from autounet.inference.logits import SegmentationBuilder, logits_to_probabilities, logits_to_segmentation
from autounet.inference.original_geometry import probabilities_in_slabs
from autounet.inference.original_geometry import to_original_geometry as export_prediction
from autounet.io.geometry import ImageGeometry
from autounet.planning.plans import Plans
from autounet.preprocessing.properties import CaseProperties
from autounet.preprocessing.resample import resample_to_shape


def _case() -> CaseProperties:
    # Raw axes (X-ish, Y, Z-ish) with the thick axis last; the plan moves it first (axis order (2, 0, 1)).
    geometry = ImageGeometry(spacing=(0.7, 0.8, 3.0), origin=(0.0, 0.0, 0.0),
                             direction=((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)), world_frame="RAS")
    return CaseProperties(schema_version=1, case_id="c", original_geometry=geometry,
                          shape_before_crop=(9, 23, 19), bbox_used_for_cropping=((1, 8), (2, 21), (0, 17)),
                          shape_after_crop=(7, 19, 17), spacing_after_resampling=(2.0, 1.5, 1.5),
                          shape_after_resampling=(10, 10, 9), class_locations={})


def _reference(logits: torch.Tensor, properties: CaseProperties, plans: Plans, order: tuple[int, ...] | None,
               ) -> tuple[np.ndarray, np.ndarray]:
    """The unchunked algorithm (nnU-Net's order): all logits resampled together, then labels and probabilities."""
    region_based = order is not None
    spacing = tuple(properties.original_geometry.spacing[a] for a in plans.axis_order)
    plan = replace(plans.configuration("3d_fullres").resampling, image_order=1)
    resampled_logits = resample_to_shape(logits.numpy(), properties.shape_after_crop,
                                         properties.spacing_after_resampling, spacing, plan)
    cropped = logits_to_segmentation(torch.from_numpy(resampled_logits), order).numpy()
    resampled = logits_to_probabilities(torch.from_numpy(resampled_logits), region_based).numpy()
    box = tuple(slice(a, b) for a, b in properties.bbox_used_for_cropping)
    seg = np.zeros(properties.shape_before_crop, dtype=cropped.dtype)
    seg[box] = cropped
    full = np.zeros((resampled.shape[0], *properties.shape_before_crop), dtype=np.float32)
    if not region_based:
        full[0] = 1.0
    full[(slice(None), *box)] = resampled
    inverse = tuple(int(i) for i in np.argsort(plans.axis_order))
    return seg.transpose(inverse), full.transpose((0, *(i + 1 for i in inverse)))


@pytest.fixture(scope="module")
def plans(preprocessed_tiny: tuple) -> Plans:
    return replace(preprocessed_tiny[0], axis_order=(2, 0, 1))


@pytest.mark.parametrize("order", [None, (1, 2, 3)], ids=["softmax", "regions"])
def test_chunked_export_equals_unchunked(plans: Plans, order: tuple[int, ...] | None) -> None:
    properties = _case()
    logits = torch.from_numpy(np.random.default_rng(3).normal(0, 2, (3, *properties.shape_after_resampling))
                              .astype(np.float32))
    expected_seg, expected_probabilities = _reference(logits, properties, plans, order)
    original = logits.clone()
    seg, probabilities = export_prediction(logits, properties, plans, plans.configuration("3d_fullres"), order,
                                           return_probabilities=True, chunk_voxels=7)
    assert np.array_equal(seg, expected_seg) and seg.shape == (23, 19, 9)
    assert probabilities is not None
    np.testing.assert_allclose(probabilities, expected_probabilities, rtol=0, atol=1e-6)
    assert torch.equal(logits, original)  # never modified (read one channel at a time)
    seg_only, none = export_prediction(original.clone(), properties, plans, plans.configuration("3d_fullres"),
                                       order, chunk_voxels=1)
    assert none is None and np.array_equal(seg_only, expected_seg)


def test_probabilities_in_slabs_match_one_call() -> None:
    logits = torch.randn(4, 5, 6, 7, generator=torch.Generator().manual_seed(0))
    for region_based in (False, True):
        expected = logits_to_probabilities(logits, region_based)
        torch.testing.assert_close(probabilities_in_slabs(logits, region_based, chunk_voxels=13), expected,
                                   rtol=0, atol=1e-7)
    in_place = logits.clone()
    assert probabilities_in_slabs(in_place, False, overwrite=True, chunk_voxels=42) is in_place
    torch.testing.assert_close(in_place, logits_to_probabilities(logits, False), rtol=0, atol=1e-7)


def test_segmentation_builder_matches_argmax_and_checks_count() -> None:
    scores = torch.tensor([[0.2, 0.5, 0.3], [0.2, 0.1, 0.3], [0.6, 0.1, 0.3]])
    builder = SegmentationBuilder(3)
    for channel in scores.clone():
        builder.add(channel)
    assert builder.result().tolist() == [2, 0, 0]  # ties go to the first channel, like argmax
    incomplete = SegmentationBuilder(3)
    incomplete.add(scores[0].clone())
    with pytest.raises(ValueError, match="1 of 3"):
        incomplete.result()
    with pytest.raises(ValueError, match="region_class_order"):
        SegmentationBuilder(2, (1,))
