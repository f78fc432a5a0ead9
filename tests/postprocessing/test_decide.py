"""The postprocessing decision on hand-made cross-validation predictions whose right answer is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autounet.errors import DatasetError
from autounet.io import ImageGeometry, write_segmentation
from autounet.postprocessing import PostprocessingPlan, determine_postprocessing, mean_dice

SHAPE = (10, 10, 10)


def _pairs(tmp_path: Path, cases: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[Path, Path]]:
    pairs = []
    for index, (reference, prediction) in enumerate(cases):
        name = f"case_{index}.nii.gz"
        for folder, array in (("ref", reference), ("pred", prediction)):
            write_segmentation(array.astype(np.uint8), ImageGeometry.default(3), tmp_path / folder / name)
        pairs.append((tmp_path / "ref" / name, tmp_path / "pred" / name))
    return pairs


def _cube(value: int = 1) -> np.ndarray:
    seg = np.zeros(SHAPE, dtype=np.uint8)
    seg[1:5, 1:5, 1:5] = value
    return seg


def test_false_positive_blob_is_removed(tmp_path: Path) -> None:
    reference = _cube()
    prediction = reference.copy()
    prediction[8:10, 8:10, 8:10] = 1  # a separate false positive
    plan = determine_postprocessing(_pairs(tmp_path, [(reference, prediction), (reference, reference)]),
                                    {"organ": 1})
    assert plan.largest_component_foreground and plan.largest_component_labels == ()
    assert plan.num_cases == 2 and len(plan.steps) == 1  # one label: no per-label step
    step = plan.steps[0]
    assert step.accepted and step.dice_after == pytest.approx(1.0) and step.dice_before < 1.0


def test_removal_that_hurts_is_not_chosen(tmp_path: Path) -> None:
    reference = _cube()
    reference[8:10, 8:10, 8:10] = 1  # a real second component, predicted correctly
    plan = determine_postprocessing(_pairs(tmp_path, [(reference, reference.copy())]), {"organ": 1})
    assert plan.is_identity and not plan.steps[0].accepted


def test_per_label_decision_after_rejected_foreground_step(tmp_path: Path) -> None:
    reference = _cube(1)
    reference[7:10, 7:10, 0:3] = 2
    reference[0:2, 8:10, 8:10] = 2  # label 2 truly has two components, both predicted
    prediction = reference.copy()
    prediction[8, 0, 8] = 1  # false positive of label 1
    plan = determine_postprocessing(_pairs(tmp_path, [(reference, prediction)]), {"organ": 1, "spots": 2})
    # The foreground step would delete label 2's components: label 2 gets worse, so it is rejected.
    assert not plan.largest_component_foreground
    assert plan.largest_component_labels == (1,)
    assert [(s.target, s.accepted) for s in plan.steps] == [("foreground", False), ("organ", True), ("spots", False)]
    after = mean_dice(_pairs(tmp_path, [(reference, prediction)]), {"organ": 1, "spots": 2}, plan=plan)
    assert after == {"organ": pytest.approx(1.0), "spots": pytest.approx(1.0)}


def test_regions_are_masks_of_the_label_map(tmp_path: Path) -> None:
    reference = _cube(1)
    reference[2:4, 2:4, 2:4] = 2  # core inside the whole region
    reference[8:10, 0:2, 0:2] = 1  # a real separate piece of "whole"
    prediction = reference.copy()
    prediction[8, 8, 8] = 2  # a false positive of the core, also inside "whole"
    labels = {"whole": (1, 2), "core": (2,)}
    plan = determine_postprocessing(_pairs(tmp_path, [(reference, prediction)]), labels, region_based=True)
    assert not plan.largest_component_foreground
    assert plan.largest_component_regions == ((2,),) and plan.largest_component_labels == ()


def test_no_cases_is_an_error() -> None:
    with pytest.raises(DatasetError, match="no cross-validation"):
        determine_postprocessing([], {"organ": 1})


def test_shape_mismatch_names_the_file(tmp_path: Path) -> None:
    pairs = _pairs(tmp_path, [(_cube(), _cube())])
    write_segmentation(np.zeros((3, 3, 3), np.uint8), ImageGeometry.default(3), pairs[0][1])
    with pytest.raises(DatasetError, match="differs from the reference"):
        mean_dice(pairs, {"organ": 1}, plan=PostprocessingPlan())
