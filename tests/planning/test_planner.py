from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from autounet.errors import ConfigError, PlanError
from autounet.io.serialization import to_dict
from autounet.networks import conv_feature_map_elements
from autounet.planning import load_plans, save_plans
from autounet.planning.planner import fullres_target_spacing, plan_experiment

from .fingerprints import cases, description, jittered, make_fingerprint

GOLDEN = Path(__file__).parent / "golden"
RECORD = os.environ.get("AUTOUNET_RECORD_GOLDEN") == "1"
CASES = cases()


@pytest.fixture(scope="module")
def planned() -> dict:
    return {name: plan_experiment(fp, desc, f"Dataset000_{name}") for name, (fp, desc) in CASES.items()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_plans_match_golden(name: str, planned: dict) -> None:
    """Golden plans; re-record with AUTOUNET_RECORD_GOLDEN=1 after a deliberate planner change."""
    path = GOLDEN / f"{name}.json"
    if RECORD:
        save_plans(path, planned[name])
    expected = json.loads(path.read_text())
    actual = json.loads(json.dumps(to_dict(planned[name])))
    expected_configs = {k: v for k, v in expected["configurations"].items() if "inherits_from" not in v}
    assert {k: v for k, v in actual["configurations"].items() if k in expected_configs} == expected_configs
    assert set(actual["configurations"]) == set(expected["configurations"])


@pytest.mark.parametrize("name", sorted(CASES))
def test_plan_invariants(name: str, planned: dict) -> None:
    plans = planned[name]
    for config in plans.configurations.values():
        divisor = config.network.total_downsampling()
        assert all(p % d == 0 for p, d in zip(config.patch_size, divisor, strict=True)), config.name
        assert config.batch_size >= 2
        assert config.network.num_stages >= 2
        assert config.data_identifier
        assert len(config.normalization) == CASES[name][0].num_channels


def test_isotropic_gets_no_lowres(planned: dict) -> None:
    assert set(planned["isotropic"].configurations) == {"2d", "3d_fullres"}


def test_large_ct_gets_cascade(planned: dict) -> None:
    plans = planned["large_ct"]
    assert {"3d_lowres", "3d_cascade_fullres"} <= set(plans.configurations)
    lowres, fullres = plans.configuration("3d_lowres"), plans.configuration("3d_fullres")
    assert lowres.next_stage == "3d_cascade_fullres"
    assert plans.configuration("3d_cascade_fullres").previous_stage == "3d_lowres"
    assert all(lo > hi for lo, hi in zip(lowres.spacing, fullres.spacing, strict=True))
    assert fullres.batch_dice and not lowres.batch_dice
    assert lowres.data_identifier != fullres.data_identifier
    assert plans.configuration("3d_cascade_fullres").data_identifier == fullres.data_identifier
    assert fullres.normalization[0].scheme == "ct"
    assert fullres.normalization[0].clip_min == -17.0


def test_anisotropic_uses_tenth_percentile_and_axis_order(planned: dict) -> None:
    fingerprint, _ = CASES["anisotropic"]
    spacing = fullres_target_spacing(fingerprint)
    import numpy as np

    assert spacing[0] == pytest.approx(float(np.percentile([s[0] for s in fingerprint.spacings], 10)))
    fullres = planned["anisotropic"].configuration("3d_fullres")
    assert fullres.network.kernel_sizes[0][0] == 1  # no convolution across thick slices at full resolution
    assert planned["anisotropic"].axis_order == (0, 1, 2)


def test_axis_order_puts_coarse_axis_first() -> None:
    spacings, shapes = jittered((0.8, 0.8, 4.0), (200, 200, 30), 10, spacing_jitter=0.0)
    plans = plan_experiment(make_fingerprint(spacings, shapes), description(), "Dataset000_T")
    assert plans.axis_order == (2, 0, 1)
    assert plans.configuration("3d_fullres").spacing[0] == pytest.approx(4.0)


def test_multichannel_nonzero_mask_for_zscore(planned: dict) -> None:
    config = planned["multichannel"].configuration("3d_fullres")
    assert [n.scheme for n in config.normalization] == ["zscore", "zscore"]
    assert all(n.use_nonzero_mask for n in config.normalization)


def test_two_d_dataset_plans_only_2d(planned: dict) -> None:
    plans = planned["two_d"]
    assert set(plans.configurations) == {"2d"}
    config = plans.configuration("2d")
    assert config.ndim == 2 and len(config.patch_size) == 2
    assert config.normalization[0].scheme == "rgb_to_0_1"


def test_memory_budget_scales_patch_or_batch() -> None:
    fingerprint, desc = CASES["large_ct"]
    small = plan_experiment(fingerprint, desc, "D", gpu_memory_gib=4).configuration("3d_fullres")
    large = plan_experiment(fingerprint, desc, "D", gpu_memory_gib=32).configuration("3d_fullres")
    assert math.prod(large.patch_size) * large.batch_size > math.prod(small.patch_size) * small.batch_size


def test_memory_estimate_fits_budget(planned: dict) -> None:
    config = planned["large_ct"].configuration("3d_fullres")
    elements = conv_feature_map_elements(config.network, config.patch_size, 1, 3)
    assert elements <= 560e6  # the default preset's reference at 8 GiB


def test_resenc_preset_uses_residual_encoder() -> None:
    fingerprint, desc = CASES["isotropic"]
    plans = plan_experiment(fingerprint, desc, "D", preset="resenc_m")
    config = plans.configuration("3d_fullres")
    assert config.network.encoder == "residual"
    assert config.network.blocks_per_stage[:4] == (1, 3, 4, 6)
    assert plans.planner == "resenc_m"


def test_planning_is_deterministic() -> None:
    fingerprint, desc = CASES["multichannel"]
    assert plan_experiment(fingerprint, desc, "D") == plan_experiment(fingerprint, desc, "D")


def test_bad_inputs_raise_plan_errors() -> None:
    fingerprint, _ = CASES["isotropic"]
    with pytest.raises(PlanError, match="channel"):
        plan_experiment(fingerprint, description(("T1", "T2")), "D")
    with pytest.raises(PlanError, match="preset"):
        plan_experiment(fingerprint, description(), "D", preset="huge")
    with pytest.raises(PlanError, match="several label maps"):
        plan_experiment(fingerprint, description(), "D", preset="early_branching")
    tiny = make_fingerprint([(1.0, 1.0, 1.0)] * 3, [(5, 5, 5)] * 3)
    with pytest.raises(PlanError, match="too small"):
        plan_experiment(tiny, description(), "D")


def test_plans_roundtrip_and_validation(tmp_path: Path, planned: dict) -> None:
    plans = planned["large_ct"]
    path = tmp_path / "plans.json"
    save_plans(path, plans)
    raw = json.loads(path.read_text())
    assert raw["configurations"]["3d_cascade_fullres"]["inherits_from"] == "3d_fullres"
    assert load_plans(path) == plans
    raw["configurations"]["3d_fullres"]["patch_sise"] = [1, 2, 3]
    path.write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match="patch_sise"):
        load_plans(path)
    raw["configurations"]["3d_fullres"].pop("patch_sise")
    raw["schema_version"] = 99
    path.write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match="newer"):
        load_plans(path)
