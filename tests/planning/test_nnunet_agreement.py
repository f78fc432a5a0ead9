"""The planner agrees with nnU-Net v2 (2.8.1) on realistic geometries.

``data/nnunet_reference_plans.json`` holds fingerprints of nine made-up but realistic datasets (liver-like
CT, BraTS-like 4-channel MR, heart, prostate, ACDC-like anisotropic, spleen, a transposed axis, natural 2D,
small 3D) and the plans nnU-Net v2's default and ResEnc M/L/XL planners made for them (numbers only).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autounet.dataset.description import parse_dataset_json
from autounet.fingerprint.extract import load_fingerprint
from autounet.planning.planner import plan_experiment

REFERENCE = json.loads((Path(__file__).parent / "data" / "nnunet_reference_plans.json").read_text())
PRESETS = {"ExperimentPlanner": "default", "nnUNetPlannerResEncM": "resenc_m",
           "nnUNetPlannerResEncL": "resenc_l", "nnUNetPlannerResEncXL": "resenc_xl"}
CASES = [(name, planner) for name, entry in REFERENCE.items() for planner in entry["nnunet_plans"]]


@pytest.mark.parametrize(("name", "planner"), CASES, ids=[f"{n}-{PRESETS[p]}" for n, p in CASES])
def test_plans_agree_with_nnunet(name: str, planner: str, tmp_path: Path) -> None:
    entry = REFERENCE[name]
    fingerprint_file = tmp_path / "dataset_fingerprint.json"
    fingerprint_file.write_text(json.dumps(entry["fingerprint"]))
    fingerprint = load_fingerprint(fingerprint_file)
    description = parse_dataset_json(entry["dataset_json"], tmp_path / "dataset.json")
    plans = plan_experiment(fingerprint, description, name, PRESETS[planner])
    reference = entry["nnunet_plans"][planner]
    assert set(plans.configurations) == set(reference["configurations"])
    if fingerprint.ndim == 3:
        assert list(plans.axis_order) == reference["transpose_forward"]
    for config_name, expected in reference["configurations"].items():
        if "inherits_from" in expected:
            continue
        config = plans.configuration(config_name)
        network = config.network
        assert config.spacing == pytest.approx(expected["spacing"], abs=1e-4), config_name
        assert list(config.patch_size) == expected["patch_size"], config_name
        assert config.batch_size == expected["batch_size"], config_name
        assert [list(s) for s in network.strides] == expected["strides"], config_name
        assert [list(k) for k in network.kernel_sizes] == expected["kernel_sizes"], config_name
        assert list(network.features_per_stage) == expected["features_per_stage"], config_name
        assert list(network.blocks_per_stage) == expected["n_conv_or_blocks_per_stage"], config_name
        assert list(network.convs_per_decoder_stage) == expected["n_conv_per_stage_decoder"], config_name
        assert [n.use_nonzero_mask for n in config.normalization] == expected["use_mask_for_norm"], config_name
        assert config.batch_dice == expected["batch_dice"], config_name
        assert list(config.median_shape) == [round(m) for m in expected["median_image_size_in_voxels"]]
