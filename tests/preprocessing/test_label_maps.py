"""Cases with several label maps (one per task) go through preprocessing like the one map of nnU-Net v2 data."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autounet.io import ImageGeometry
from autounet.planning.plans import ChannelNormalization
from autounet.preprocessing import CaseOptions, preprocess_case
from autounet.preprocessing.properties import load_case_properties, save_case_properties

from .conftest import PlansFactory
from .test_preprocess_case import _case


def test_stacked_label_maps_are_each_preprocessed_like_a_single_one(plans_factory: PlansFactory,
                                                                    tmp_path: Path) -> None:
    image, zones = _case()
    front = np.zeros_like(zones)
    front[5, 4:18, 10] = 1  # a thin line
    geometry = ImageGeometry.default(3, (3.0, 0.8, 0.8))
    plans = plans_factory((1.5, 1.0, 1.0), channels=2,
                          normalization=ChannelNormalization("zscore", use_nonzero_mask=True))
    configuration = plans.configuration("3d_fullres")
    options = CaseOptions(case_id="c1", foreground_labels=(1, 2))
    data, seg, props = preprocess_case(image, np.stack([zones, front]), geometry, plans, configuration, options)
    for index, label_map in enumerate((zones, front)):
        single_data, single_seg, single_props = preprocess_case(
            image, label_map, geometry, plans, configuration, options if index == 0 else CaseOptions(case_id="c1"))
        np.testing.assert_array_equal(data, single_data)
        assert seg is not None and single_seg is not None
        np.testing.assert_array_equal(seg[index], single_seg)
        locations = props.class_locations if index == 0 else props.further_map_class_locations[0]
        assert locations == single_props.class_locations
    assert seg.shape == (2, *data.shape[1:]) and set(props.further_map_class_locations[0]) == {1}

    save_case_properties(tmp_path / "c1.json", props)
    assert load_case_properties(tmp_path / "c1.json") == props
    save_case_properties(tmp_path / "single.json", single_props)
    assert "further_map_class_locations" not in (tmp_path / "single.json").read_text()
    assert load_case_properties(tmp_path / "single.json") == single_props
