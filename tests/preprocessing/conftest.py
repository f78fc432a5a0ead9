"""Hand-built plans for preprocessing tests (independent of the planner)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from autounet.networks.spec import UNetSpec
from autounet.planning.plans import ChannelNormalization, ConfigurationPlan, Plans, ResamplingPlan

PlansFactory = Callable[..., Plans]


def make_configuration(name: str, spacing: Sequence[float], channels: int = 1,
                       normalization: ChannelNormalization | None = None,
                       resampling: ResamplingPlan | None = None, previous_stage: str | None = None,
                       data_identifier: str = "") -> ConfigurationPlan:
    """A configuration with a minimal two-stage network; only the preprocessing fields matter here."""
    ndim = len(spacing)
    network = UNetSpec(ndim=ndim, encoder="plain", features_per_stage=(8, 16), kernel_sizes=((3,) * ndim,) * 2,
                       strides=((1,) * ndim, (2,) * ndim), blocks_per_stage=(1, 1), convs_per_decoder_stage=(1,))
    return ConfigurationPlan(
        name=name, ndim=ndim, spacing=tuple(float(s) for s in spacing), median_shape=(16,) * ndim,
        patch_size=(16,) * ndim, batch_size=2, network=network,
        normalization=(normalization or ChannelNormalization("zscore"),) * channels,
        resampling=resampling or ResamplingPlan(), previous_stage=previous_stage, data_identifier=data_identifier)


def make_plans(configurations: Sequence[ConfigurationPlan], axis_order: Sequence[int] = (0, 1, 2)) -> Plans:
    """Plans holding the given configurations."""
    ndim = len(axis_order)
    return Plans(schema_version=Plans.SCHEMA_VERSION, dataset_name="Dataset999_Tiny", planner="test",
                 gpu_memory_gib=8.0, axis_order=tuple(axis_order), original_median_spacing=(1.0,) * ndim,
                 original_median_shape=(16,) * ndim, configurations={c.name: c for c in configurations})


@pytest.fixture
def plans_factory() -> PlansFactory:
    """``plans_factory(spacing, **configuration_options)``: plans with one configuration ``3d_fullres``/``2d``."""

    def make(spacing: Sequence[float], axis_order: Sequence[int] | None = None, name: str | None = None,
             **options: object) -> Plans:
        ndim = len(spacing) if axis_order is None else len(axis_order)
        name = name or ("2d" if len(spacing) == 2 else "3d_fullres")
        order = tuple(axis_order) if axis_order is not None else tuple(range(ndim))
        return make_plans([make_configuration(name, spacing, **options)], order)  # type: ignore[arg-type]

    return make
