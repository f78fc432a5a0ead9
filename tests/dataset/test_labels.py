from __future__ import annotations

import pytest
import torch

from autounet.dataset.description import DatasetDescription
from autounet.dataset.labels import DEFAULT_TASK, LabelScheme, OutputLayout, OutputTask
from autounet.errors import DatasetError


def description(labels: dict, regions_class_order: tuple[int, ...] | None = None) -> DatasetDescription:
    return DatasetDescription(channel_names={0: "CT"}, labels=labels, num_training=1, file_ending=".nii.gz",
                              regions_class_order=regions_class_order)


def test_softmax_scheme_from_description() -> None:
    scheme = LabelScheme.from_description(description({"background": 0, "liver": 1, "tumour": 2, "ignore": 3}))
    assert not scheme.region_based
    assert scheme.regions is None
    assert scheme.num_outputs == 3
    assert scheme.foreground_labels == (1, 2)
    assert scheme.ignore_label == 3
    assert scheme.num_metric_channels == 2


def test_region_scheme_from_description() -> None:
    labels = {"background": 0, "whole": (1, 2, 3), "core": (2, 3), "enhancing": 3}
    scheme = LabelScheme.from_description(description(labels, regions_class_order=(1, 2, 3)))
    assert scheme.region_based
    assert scheme.regions == ((1, 2, 3), (2, 3), (3,))
    assert scheme.num_outputs == 3
    assert scheme.num_metric_channels == 3
    assert scheme.foreground_labels == (1, 2, 3)
    assert scheme.ignore_label is None


def test_background_only_region_is_not_an_output() -> None:
    labels = {"background": (0,), "a": (1, 2), "b": (2,)}
    scheme = LabelScheme.from_description(description(labels, regions_class_order=(1, 2)))
    assert scheme.regions == ((1, 2), (2,))


def test_no_foreground_is_an_error() -> None:
    with pytest.raises(DatasetError, match="no foreground"):
        LabelScheme.from_description(description({"background": 0}))


def test_softmax_targets_set_ignore_to_background_and_mask_it() -> None:
    scheme = LabelScheme(labels=(0, 1, 2), ignore_label=3)
    seg = torch.tensor([[[[0, 1], [2, 3]]]], dtype=torch.uint8)
    target, mask = scheme.targets_for_loss(seg)
    assert target.dtype == torch.int64
    assert target.tolist() == [[[[0, 1], [2, 0]]]]
    assert mask is not None and mask.dtype == torch.float32
    assert mask.tolist() == [[[[1.0, 1.0], [1.0, 0.0]]]]


def test_targets_without_ignore_label_have_no_mask() -> None:
    scheme = LabelScheme(labels=(0, 1))
    target, mask = scheme.targets_for_loss(torch.zeros(1, 1, 2, 2, dtype=torch.int64))
    assert mask is None
    assert target.shape == (1, 1, 2, 2)


def test_region_targets_are_overlapping_masks() -> None:
    scheme = LabelScheme(labels=(0, 1, 2, 3), regions=((1, 2, 3), (2, 3), (3,)), regions_class_order=(1, 2, 3),
                         ignore_label=4)
    seg = torch.tensor([[[0, 1, 2, 3, 4]]])  # (B=1, 1, X=5)
    target, mask = scheme.targets_for_loss(seg)
    assert target.dtype == torch.float32
    assert target.tolist() == [[[0, 1, 1, 1, 0], [0, 0, 1, 1, 0], [0, 0, 0, 1, 0]]]
    assert mask is not None and mask.tolist() == [[[1, 1, 1, 1, 0]]]


def test_targets_need_a_single_channel() -> None:
    with pytest.raises(ValueError, match=r"\(B, 1, \*spatial\)"):
        LabelScheme(labels=(0, 1)).targets_for_loss(torch.zeros(1, 2, 4, 4, dtype=torch.int64))


def test_invalid_schemes_are_rejected() -> None:
    with pytest.raises(ValueError):
        LabelScheme(labels=(0,))
    with pytest.raises(ValueError):
        LabelScheme(labels=(0, 1), ignore_label=1)
    with pytest.raises(ValueError):
        LabelScheme(labels=(0, 1, 2), regions=((1, 2),), regions_class_order=(1, 2))


def test_output_layout_of_one_label_map_owns_every_channel() -> None:
    layout = OutputLayout.from_description(description({"background": 0, "liver": 1, "tumour": 2}))
    assert [task.name for task in layout.tasks] == [DEFAULT_TASK]
    assert layout.num_outputs == 3 and layout.single.num_outputs == 3
    assert layout.tasks[0].channels == slice(0, 3)
    assert layout.single.regions_class_order is None  # softmax: argmax, no paint order
    assert layout.single.scored_label_names == {"liver": 1, "tumour": 2}


def test_output_layout_of_regions_keeps_their_paint_order_and_names() -> None:
    layout = OutputLayout.from_description(description(
        {"background": 0, "whole": (1, 2, 3), "core": (2, 3), "enhancing": 3}, regions_class_order=(1, 2, 3)))
    scheme = layout.single
    assert layout.num_outputs == 3 and scheme.regions_class_order == (1, 2, 3)
    assert scheme.scored_label_names == {"whole": (1, 2, 3), "core": (2, 3), "enhancing": (3,)}


def test_two_task_layout_concatenates_channels_in_task_order() -> None:
    zones = LabelScheme(labels=(0, 1, 2, 3))
    front = LabelScheme(labels=(0, 1))
    layout = OutputLayout.of_schemes({"zones": zones, "front": front})
    assert layout.num_outputs == 6
    assert layout.task("zones").channels == slice(0, 4) and layout.task("front").channels == slice(4, 6)
    with pytest.raises(ValueError, match="2 tasks"):
        _ = layout.single
    with pytest.raises(KeyError, match="zones, front"):
        layout.task("boundary")
    with pytest.raises(ValueError, match="expected 4"):
        OutputLayout((OutputTask("zones", zones), OutputTask("front", front, first_channel=3)))
    with pytest.raises(ValueError, match="distinct"):
        OutputLayout.of_schemes({"zones": zones}).__class__(
            (OutputTask("zones", zones), OutputTask("zones", front, first_channel=4)))


def test_scheme_module_does_not_import_torch() -> None:
    # Planning and preprocessing workers use label schemes and must not pay for importing torch.
    import subprocess
    import sys

    code = "import sys, autounet.dataset.labels; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
