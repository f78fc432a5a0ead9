from __future__ import annotations

import json
import math

import pytest
import torch
from torch.nn import functional

from autounet.dataset.labels import LabelScheme
from autounet.errors import CheckpointError
from autounet.training.metrics import PseudoDiceTracker, tp_fp_fn


def test_softmax_counts_hand_computed() -> None:
    scheme = LabelScheme(labels=(0, 1, 2), ignore_label=3)
    seg = torch.tensor([[[[0, 1, 1, 2, 2, 3]]]])
    predicted = torch.tensor([[[1, 1, 0, 2, 1, 2]]])
    logits = 5.0 * functional.one_hot(predicted, 3).movedim(-1, 1).float()
    tp, fp, fn = tp_fp_fn(logits, seg, scheme)
    # Class 1: TP at 1, FP at 0 and 4, FN at 2. Class 2: TP at 3, FN at 4; voxel 5 is ignored.
    assert tp.tolist() == [1, 1]
    assert fp.tolist() == [2, 0]
    assert fn.tolist() == [1, 1]
    # Counts are summed over the batch.
    tp2, fp2, fn2 = tp_fp_fn(torch.cat([logits, logits]), torch.cat([seg, seg]), scheme)
    assert (tp2.tolist(), fp2.tolist(), fn2.tolist()) == ([2, 2], [4, 0], [2, 2])


def test_region_counts_hand_computed() -> None:
    scheme = LabelScheme(labels=(0, 1, 2), regions=((1, 2), (2,)), regions_class_order=(1, 2), ignore_label=3)
    seg = torch.tensor([[[0, 1, 2, 2, 3]]])
    logits = torch.tensor([[[1.0, -1.0, 1.0, 0.0, 1.0], [1.0, 1.0, 1.0, -1.0, 1.0]]])
    tp, fp, fn = tp_fp_fn(logits, seg, scheme)
    # A logit of exactly 0 is sigmoid 0.5: not predicted (> 0.5 needed). The ignore voxel counts nowhere.
    assert tp.tolist() == [1, 1]
    assert fp.tolist() == [1, 2]
    assert fn.tolist() == [2, 1]


def test_counts_reject_mismatched_shapes() -> None:
    with pytest.raises(ValueError):
        tp_fp_fn(torch.zeros(1, 2, 4, 4), torch.zeros(1, 1, 2, 2, dtype=torch.int64), LabelScheme(labels=(0, 1)))


def test_tracker_accumulates_and_computes_dice() -> None:
    tracker = PseudoDiceTracker()
    tracker.update(torch.tensor([1, 0, 0]), torch.tensor([1, 0, 0]), torch.tensor([0, 0, 1]))
    tracker.update([0, 1, 0], [1, 0, 0], [1, 1, 0])
    assert tracker.tp == [1.0, 1.0, 0.0]
    dice = tracker.dice_per_class()
    assert dice[0] == pytest.approx(2 / (2 + 2 + 1))
    assert dice[1] == pytest.approx(2 / (2 + 0 + 1))
    assert dice[2] == 0.0
    assert tracker.mean_dice() == pytest.approx((0.4 + 2 / 3 + 0.0) / 3)
    with pytest.raises(ValueError):
        tracker.update([1], [1], [1])
    tracker.reset()
    assert tracker.tp == []


def test_class_absent_everywhere_is_nan_and_skipped_in_mean() -> None:
    tracker = PseudoDiceTracker()
    tracker.update([2, 0], [0, 0], [0, 0])
    assert math.isnan(tracker.dice_per_class()[1])
    assert tracker.mean_dice() == 1.0
    assert math.isnan(PseudoDiceTracker().mean_dice())


def test_ema_sequence() -> None:
    tracker = PseudoDiceTracker()
    values = [tracker.update_ema(v) for v in (0.5, 0.7, 0.9)]
    assert values == pytest.approx([0.5, 0.52, 0.558])
    # A non-finite value (no foreground at all) leaves the average untouched.
    assert tracker.update_ema(math.nan) == pytest.approx(0.558)
    assert PseudoDiceTracker().update_ema(math.nan) is None


def test_state_round_trip_is_exact_and_json() -> None:
    tracker = PseudoDiceTracker()
    tracker.update([3, 1], [1, 0], [2, 5])
    tracker.update_ema(0.3)
    tracker.update_ema(0.123456789)
    state = json.loads(json.dumps(tracker.state_dict()))
    assert state["schema_version"] == 1
    restored = PseudoDiceTracker()
    restored.load_state_dict(state)
    assert restored == tracker
    assert restored.update_ema(0.8) == tracker.update_ema(0.8)


def test_malformed_state_is_a_checkpoint_error() -> None:
    good = PseudoDiceTracker().state_dict()
    with pytest.raises(CheckpointError, match="ema"):
        PseudoDiceTracker().load_state_dict({**good, "ema": "high"})
    with pytest.raises(CheckpointError, match="newer"):
        PseudoDiceTracker().load_state_dict({**good, "schema_version": 99})
    with pytest.raises(CheckpointError, match="length"):
        PseudoDiceTracker().load_state_dict({**good, "tp": [1.0]})
