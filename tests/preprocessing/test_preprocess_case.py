"""One case through the whole pipeline: order of steps, 2D configurations of 3D data, axis order."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.ndimage as ndi

from autounet.io import ImageGeometry
from autounet.planning.plans import ChannelNormalization
from autounet.preprocessing import CaseOptions, preprocess_case, sample_class_locations

from .conftest import PlansFactory


def _case(shape: tuple[int, ...] = (10, 24, 20), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = np.zeros((2, *shape), dtype=np.float32)
    body = tuple(slice(1, s - 2) for s in shape)
    image[(slice(None), *body)] = rng.normal(100.0, 10.0, size=(2, *(s - 3 for s in shape)))
    seg = np.zeros(shape, dtype=np.uint8)
    seg[ndi.gaussian_filter(rng.normal(size=shape), 1.5) > 0.1] = 1
    seg[tuple(slice(2, 5) for _ in shape)] = 2
    seg[image[0] == 0] = 0
    return image, seg


def test_3d_case(plans_factory: PlansFactory) -> None:
    image, seg = _case()
    before = (image.copy(), seg.copy())
    geometry = ImageGeometry.default(3, (3.0, 0.8, 0.8))
    plans = plans_factory((1.5, 1.0, 1.0), channels=2,
                          normalization=ChannelNormalization("zscore", use_nonzero_mask=True))
    data, seg_out, props = preprocess_case(image, seg, geometry, plans, plans.configuration("3d_fullres"),
                                           CaseOptions(case_id="c1", foreground_labels=(1, 2, 3)))
    np.testing.assert_array_equal(image, before[0])  # inputs untouched
    np.testing.assert_array_equal(seg, before[1])
    assert props.shape_before_crop == (10, 24, 20)
    assert props.bbox_used_for_cropping == ((1, 8), (1, 22), (1, 18))
    assert props.shape_after_crop == (7, 21, 17)
    assert props.shape_after_resampling == (14, 17, 14) == data.shape[1:] == seg_out.shape
    assert props.spacing_after_resampling == (1.5, 1.0, 1.0)
    assert data.dtype == np.float32 and data.flags.c_contiguous
    assert seg_out.dtype == np.int8 and set(np.unique(seg_out)) <= {-1, 0, 1, 2}
    assert props.class_locations[3] == ()  # a dataset label absent from this case
    for label in (1, 2):
        coords = props.locations(label)
        total = int(np.sum(seg_out == label))
        assert len(coords) == max(min(10000, total), math.ceil(total * 0.01)) > 0
        assert np.all(seg_out[tuple(coords.T)] == label)


def test_normalisation_happens_before_resampling(plans_factory: PlansFactory) -> None:
    image, seg = _case()
    plans = plans_factory((1.5, 1.0, 1.0), channels=2,
                          normalization=ChannelNormalization("zscore", use_nonzero_mask=True))
    data, seg_out, _ = preprocess_case(image, seg, ImageGeometry.default(3, (1.5, 1.0, 1.0)), plans,
                                       plans.configuration("3d_fullres"))
    # No resampling here, so the statistics inside the mask are exact.
    inside = seg_out >= 0
    assert data[0][inside].mean() == pytest.approx(0.0, abs=1e-4)
    assert np.all(data[0][~inside] == 0.0)


def test_2d_configuration_of_3d_data_keeps_the_slices(plans_factory: PlansFactory) -> None:
    image, seg = _case()
    plans = plans_factory((1.6, 1.6), channels=2, axis_order=(0, 1, 2))
    data, seg_out, props = preprocess_case(image, seg, ImageGeometry.default(3, (3.0, 0.8, 0.8)), plans,
                                           plans.configuration("2d"))
    assert props.spacing_after_resampling == (3.0, 1.6, 1.6)
    assert data.shape == (2, 7, 10, 8) and seg_out.shape == (7, 10, 8)


def test_axis_order_transposes_everything(plans_factory: PlansFactory) -> None:
    image, seg = _case()
    geometry = ImageGeometry.default(3, (0.8, 3.0, 0.8))
    plans = plans_factory((3.0, 1.0, 1.0), channels=2, axis_order=(1, 0, 2))
    data, seg_out, props = preprocess_case(image, seg, geometry, plans, plans.configuration("3d_fullres"))
    reference = plans_factory((3.0, 1.0, 1.0), channels=2)
    expected = preprocess_case(np.ascontiguousarray(image.transpose(0, 2, 1, 3)), seg.transpose(1, 0, 2).copy(),
                               ImageGeometry.default(3, (3.0, 0.8, 0.8)), reference,
                               reference.configuration("3d_fullres"))
    np.testing.assert_array_equal(data, expected[0])
    np.testing.assert_array_equal(seg_out, expected[1])
    assert props.shape_before_crop == (24, 10, 20)
    assert props.original_geometry == geometry


def test_2d_data_and_no_labels(plans_factory: PlansFactory) -> None:
    image, _ = _case((30, 26))
    plans = plans_factory((0.5, 0.5), channels=2, normalization=ChannelNormalization("rescale_0_1"))
    data, seg_out, props = preprocess_case(image, None, ImageGeometry.default(2, (1.0, 1.0)), plans,
                                           plans.configuration("2d"))
    assert seg_out is None and props.class_locations == {}
    assert data.shape == (2, 54, 46)
    assert data.min() >= 0.0 and data.max() <= 1.0


def test_class_locations_are_seeded_by_case() -> None:
    seg = np.zeros((50, 60), dtype=np.int8)
    seg[5:45, 10:50] = 1
    first = sample_class_locations(seg, (1,), CaseOptions(case_id="a", max_locations_per_class=20))
    assert first == sample_class_locations(seg, (1,), CaseOptions(case_id="a", max_locations_per_class=20))
    assert first != sample_class_locations(seg, (1,), CaseOptions(case_id="b", max_locations_per_class=20))
    assert len(first[1]) == 20 == len(set(first[1]))  # 1% of 1600 is 16 < 20
    coverage = sample_class_locations(seg, (1,), CaseOptions(max_locations_per_class=5))
    assert len(coverage[1]) == 16  # at least 1% of the class's voxels
