"""Experiment planning: from fingerprint and memory budget to typed, versioned plans."""

from __future__ import annotations

from autounet.planning.plans import (
    ChannelNormalization,
    ConfigurationPlan,
    NormalizationScheme,
    Plans,
    ResamplingPlan,
    data_identifier,
    describe_plans,
    load_plans,
    save_plans,
)

__all__ = [
    "ChannelNormalization",
    "ConfigurationPlan",
    "NormalizationScheme",
    "Plans",
    "ResamplingPlan",
    "data_identifier",
    "describe_plans",
    "load_plans",
    "save_plans",
]
