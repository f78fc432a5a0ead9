"""Boxes over sliding windows, mirrored passes and folds; back to the input's grid and world coordinates."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from autounet.detection.box_files import OriginalBox, paint_boxes, write_boxes_json
from autounet.detection.boxes import box_iou
from autounet.detection.detections import BoxFusionSettings, BoxMerger, Detections, position_weights
from autounet.inference.box_prediction import boxes_to_original, predict_boxes_sliding_window
from autounet.inference.sliding_window import SlidingWindowSettings
from autounet.io import ImageGeometry
from autounet.preprocessing.properties import CaseProperties


def _bright_voxel_detector(patches: torch.Tensor) -> list[Detections]:
    """A stand-in detector: the bounding box of the voxels above 0.5, less sure of objects cut by the patch
    border (as a trained detector is)."""
    found = []
    for patch in patches:
        mask = patch[0] > 0.5
        if not mask.any():
            found.append(Detections.empty(mask.ndim))
            continue
        index = torch.nonzero(mask)
        box = torch.cat([index.min(dim=0).values, index.max(dim=0).values + 1]).float()
        cut = bool((box[:mask.ndim] == 0).any() or (box[mask.ndim:] == torch.tensor(mask.shape)).any())
        found.append(Detections(box[None], torch.tensor([0.5 if cut else 0.9]), torch.tensor([1])))
    return found


def test_merger_shifts_windows_and_fuses_overlapping_boxes() -> None:
    merger = BoxMerger((20, 20), (slice(2, 18), slice(0, 20)), (10, 10), BoxFusionSettings(iou_threshold=0.3))
    merger.add((0, 0), Detections(torch.tensor([[4.0, 4.0, 8.0, 8.0]]), torch.tensor([0.8]), torch.tensor([0])))
    merger.add((2, 2), Detections(torch.tensor([[2.0, 2.0, 6.0, 6.0]]), torch.tensor([0.6]), torch.tensor([0])))
    merger.add((0, 10), Detections(torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.tensor([0.5]), torch.tensor([1])))
    fused = merger.finalize()
    assert len(fused) == 2  # the two class-0 boxes are the same object
    torch.testing.assert_close(fused.boxes[0], torch.tensor([2.0, 4.0, 6.0, 8.0]))  # crop start 2 on axis 0
    assert fused.scores[0] == pytest.approx(0.7) and fused.classes.tolist() == [0, 1]
    assert len(BoxMerger((20, 20), (slice(0, 20),) * 2, (10, 10), BoxFusionSettings(score_threshold=0.9)
                         ).finalize()) == 0


def test_each_window_pass_votes_once_and_missing_passes_lower_the_score() -> None:
    merger = BoxMerger((10, 10), (slice(0, 10),) * 2, (10, 10), BoxFusionSettings(iou_threshold=0.2))
    confident, weak_and_larger = [3.0, 3.0, 7.0, 7.0], [2.0, 2.0, 9.0, 9.0]  # IoU 16/49
    for _pass in range(2):  # e.g. the plain and the mirrored pass of one window
        merger.add((0, 0), Detections(torch.tensor([confident, weak_and_larger]), torch.tensor([0.9, 0.1]),
                                      torch.tensor([0, 0])))
    merger.add((0, 0), Detections.empty(2))  # a third pass over the same window found nothing
    fused = merger.finalize()
    # The weak boxes are absorbed, not averaged in: the box stays, and 2 of 3 passes give 0.9 * 2 / 3.
    assert len(fused) == 1
    torch.testing.assert_close(fused.boxes[0], torch.tensor(confident))
    assert fused.scores[0].item() == pytest.approx(0.6)


def test_painted_boxes_take_voxels_whose_centres_lie_inside_and_the_higher_score_wins() -> None:
    def box(edges: tuple[float, ...], class_index: int, score: float) -> OriginalBox:
        return OriginalBox(edges, (0.0, 0.0), (0.0, 0.0), class_index, score)

    boxes = [box((0.4, 1.0, 3.6, 4.0), 0, 0.9),   # rows 0..3 (centre 3.5 < 3.6), columns 1..3
             box((2.0, 2.0, 5.0, 6.0), 1, 0.95),  # overlaps the first: it scores higher, so it wins there
             box((0.0, 5.0, 1.0, 6.0), 1, 0.2),   # below the minimum score: not painted
             box((-2.0, -1.0, 1.0, 1.0), 0, 0.6)]  # partly outside the image: clipped
    painted = paint_boxes(boxes, (6, 6), min_score=0.5)
    expected = np.zeros((6, 6), dtype=np.uint8)
    expected[0:1, 0:1] = 1
    expected[0:4, 1:4] = 1
    expected[2:5, 2:6] = 2
    np.testing.assert_array_equal(painted, expected)
    assert paint_boxes(boxes, (6, 6), min_score=0.99).sum() == 0


def test_boxes_near_the_window_border_weigh_less() -> None:
    weights = position_weights(torch.tensor([[4.0, 4.0, 6.0, 6.0], [0.0, 0.0, 2.0, 2.0]]), (10, 10))
    assert weights[0] == pytest.approx(1.0) and weights[1] < 0.01


@pytest.mark.parametrize("mirror_axes", [(), (0, 1, 2)])
def test_a_cube_is_found_once_over_windows_mirrors_and_folds(mirror_axes: tuple[int, ...]) -> None:
    image = torch.zeros(1, 24, 30, 30)
    image[0, 5:13, 9:19, 14:22] = 1.0  # half-open (5, 9, 14, 13, 19, 22)
    settings = SlidingWindowSettings(patch_size=(16, 16, 16), step_size=0.5, mirror_axes=mirror_axes)
    found = predict_boxes_sliding_window([_bright_voxel_detector] * 2, image, settings,
                                         BoxFusionSettings(iou_threshold=0.1, score_threshold=0.6))
    assert len(found) == 1 and found.classes.item() == 1
    truth = torch.tensor([[5.0, 9.0, 14.0, 13.0, 19.0, 22.0]])
    assert box_iou(found.boxes, truth).item() > 0.8


def test_boxes_return_to_the_input_grid_and_world() -> None:
    # Raw (Z, Y, X) = (10, 40, 40) at spacing (3, 1, 1); the plan puts axis 0 last, resamples to double size
    # and the crop starts at (2, 4, 1) in plan order.
    geometry = ImageGeometry(spacing=(3.0, 1.0, 1.0), origin=(100.0, 0.0, -50.0),
                             direction=((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)), world_frame="LPS")
    properties = CaseProperties(
        schema_version=1, case_id="c", original_geometry=geometry, shape_before_crop=(40, 40, 10),
        bbox_used_for_cropping=((2, 32), (4, 34), (1, 9)), shape_after_crop=(30, 30, 8),
        spacing_after_resampling=(0.5, 0.5, 1.5), shape_after_resampling=(60, 60, 16))
    detections = Detections(torch.tensor([[0.0, 0.0, 0.0, 4.0, 2.0, 6.0]]), torch.tensor([0.5]),
                            torch.tensor([0]))
    (box,) = boxes_to_original(detections, properties, axis_order=(1, 2, 0))
    # plan axes (Y, X, Z): edges [0, 4) -> [2, 4) in Y, [0, 2) -> [4, 5) in X, [0, 6) -> [1, 4) in Z
    assert box.voxel_box == pytest.approx((1.0, 2.0, 4.0, 4.0, 4.0, 5.0))
    assert box.world_size == pytest.approx((9.0, 2.0, 1.0))
    assert box.world_center == pytest.approx((100.0 + 3 * 2.0, 2.5, -50.0 + 4.0))


def test_boxes_json(tmp_path: Path) -> None:
    detections = Detections(torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 3.0]]), torch.tensor([0.2, 0.9]),
                            torch.tensor([0, 1]))
    properties = CaseProperties(
        schema_version=1, case_id="c", original_geometry=ImageGeometry.default(2), shape_before_crop=(8, 8),
        bbox_used_for_cropping=((0, 8), (0, 8)), shape_after_crop=(8, 8), spacing_after_resampling=(1.0, 1.0),
        shape_after_resampling=(8, 8))
    write_boxes_json(tmp_path / "c.json", boxes_to_original(detections, properties, (0, 1)),
                     {0: "square", 1: "square_hole"}, source="model")
    data = json.loads((tmp_path / "c.json").read_text())
    assert [b["label"] for b in data["boxes"]] == ["square_hole", "square"]
    assert data["boxes"][0]["voxel_box"] == [1.0, 1.0, 3.0, 3.0] and data["schema_version"] == 1
    assert np.isclose(data["boxes"][0]["world_center"], [1.5, 1.5]).all()


def test_box_files_read_back_and_bad_ones_are_one_line_errors(tmp_path: Path) -> None:
    from autounet.detection.box_files import OriginalBox, read_boxes_json
    from autounet.errors import DatasetError

    boxes = [OriginalBox((0.0, 0.0, 0.0, 2.0, 2.0, 2.0), (1.0, 1.0, 1.0), (2.0, 2.0, 2.0), 1, 0.25)]
    write_boxes_json(tmp_path / "a_boxes.json", boxes, {})
    voxel, scores, classes = read_boxes_json(tmp_path / "a_boxes.json")
    assert voxel.shape == (1, 6) and scores.tolist() == [0.25] and classes.tolist() == [1]
    (tmp_path / "bad.json").write_text('{"schema_version": 1, "boxes": [{"voxel_box": [0, 1], "score": 1, '
                                       '"class": 0}]}')
    with pytest.raises(DatasetError, match="4 \\(2D\\) or 6"):
        read_boxes_json(tmp_path / "bad.json")
    (tmp_path / "new.json").write_text('{"schema_version": 9, "boxes": []}')
    with pytest.raises(DatasetError, match="schema_version"):
        read_boxes_json(tmp_path / "new.json")
    (tmp_path / "empty.json").write_text('{"schema_version": 1, "boxes": []}')
    assert read_boxes_json(tmp_path / "empty.json")[0].shape == (0, 4)
