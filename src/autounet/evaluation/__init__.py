"""Evaluation: overlap and distance metrics, summaries over cases."""

from __future__ import annotations

from autounet.evaluation.metrics import LabelOverlap, label_overlaps

__all__ = ["LabelOverlap", "label_overlaps"]
