"""Loading nnU-Net v2 model folders: plans conversion, weight mapping, prediction, and clear errors.

nnunetv2 is not installed here: the folders are built in the test with nnU-Net's file layout and the key names
of dynamic_network_architectures' ``PlainConvUNet`` / ``ResidualEncoderUNet`` state dicts, and the converted
network is checked against a forward pass written directly over those named weights.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.nn import functional

from autounet.cli.main import main
from autounet.errors import CheckpointError, ConfigError
from autounet.inference import PredictionSettings, Predictor
from autounet.inference.nnunet_model import convert_nnunet_plans, is_nnunet_model_folder, load_nnunet_model
from autounet.io import read_image
from tests.conftest import write_tiny_dataset

TRAINER = "nnUNetTrainer"


@dataclass(frozen=True)
class Layout:
    """A small nnU-Net network: what ``arch_kwargs`` says, plus channels."""

    ndim: int
    residual: bool
    features: tuple[int, ...] = (4, 8, 16)
    blocks: tuple[int, ...] = (2, 2, 2)
    decoder_convs: tuple[int, ...] = (2, 2)
    conv_bias: bool = True
    in_channels: int = 2
    num_classes: int = 3

    @property
    def kernels(self) -> list[list[int]]:
        first = [3, 3] if self.ndim == 2 else [1, 3, 3]
        return [first] + [[3] * self.ndim] * (len(self.features) - 1)

    @property
    def strides(self) -> list[list[int]]:
        second = [2, 2] if self.ndim == 2 else [1, 2, 2]
        return [[1] * self.ndim, second] + [[2] * self.ndim] * (len(self.features) - 2)

    @property
    def patch(self) -> list[int]:
        return [16, 16] if self.ndim == 2 else [8, 16, 16]


PLAIN_2D = Layout(ndim=2, residual=False)
RESIDUAL_3D = Layout(ndim=3, residual=True, blocks=(1, 2, 2), decoder_convs=(1, 1))


# -- nnU-Net-shaped weights and a reference forward pass over them -------------------------------------------


def _conv_block(prefix: str, cin: int, cout: int, kernel: list[int], bias: bool) -> dict[str, tuple[int, ...]]:
    """Shapes of one ConvDropoutNormReLU (``conv``, ``norm``), also under its ``all_modules`` alias."""
    shapes = {f"{prefix}.conv.weight": (cout, cin, *kernel), f"{prefix}.norm.weight": (cout,),
              f"{prefix}.norm.bias": (cout,)}
    if bias:
        shapes[f"{prefix}.conv.bias"] = (cout,)
    aliases = {k.replace(".conv.", ".all_modules.0.").replace(".norm.", ".all_modules.1."): v
               for k, v in shapes.items()}
    return {**shapes, **aliases}


def _encoder_shapes(layout: Layout) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    channels = layout.in_channels
    if layout.residual:
        shapes.update(_conv_block("encoder.stem.convs.0", channels, layout.features[0], layout.kernels[0],
                                  layout.conv_bias))
        channels = layout.features[0]
    for stage, (features, kernel, stride) in enumerate(zip(layout.features, layout.kernels, layout.strides,
                                                           strict=True)):
        for index in range(layout.blocks[stage]):
            if not layout.residual:
                shapes.update(_conv_block(f"encoder.stages.{stage}.0.convs.{index}", channels, features, kernel,
                                          layout.conv_bias))
            else:
                block = f"encoder.stages.{stage}.blocks.{index}"
                shapes.update(_conv_block(f"{block}.conv1", channels, features, kernel, layout.conv_bias))
                shapes.update(_conv_block(f"{block}.conv2", features, features, kernel, layout.conv_bias))
                strided = index == 0 and any(s != 1 for s in stride)
                if channels != features:  # the projection follows the pooling when there is one
                    shapes.update(_conv_block(f"{block}.skip.{int(strided)}", channels, features,
                                              [1] * layout.ndim, False))
            channels = features
    return shapes


def _nnunet_weights(layout: Layout, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state dict with dynamic_network_architectures' key names, duplicates included."""
    shapes = _encoder_shapes(layout)
    n = len(layout.features)
    for level in range(n - 1):
        below, skip = layout.features[n - 1 - level], layout.features[n - 2 - level]
        stride = layout.strides[n - 1 - level]
        shapes[f"decoder.transpconvs.{level}.weight"] = (below, skip, *stride)
        if layout.conv_bias:
            shapes[f"decoder.transpconvs.{level}.bias"] = (skip,)
        for index in range(layout.decoder_convs[level]):
            shapes.update(_conv_block(f"decoder.stages.{level}.convs.{index}", 2 * skip if index == 0 else skip, skip,
                                      layout.kernels[n - 2 - level], layout.conv_bias))
        shapes[f"decoder.seg_layers.{level}.weight"] = (layout.num_classes, skip, *[1] * layout.ndim)
        shapes[f"decoder.seg_layers.{level}.bias"] = (layout.num_classes,)
    generator = torch.Generator().manual_seed(seed)
    weights: dict[str, torch.Tensor] = {}
    for key, shape in shapes.items():
        canonical = key.replace(".all_modules.0.", ".conv.").replace(".all_modules.1.", ".norm.")
        if canonical not in weights:
            offset = 1.0 if canonical.endswith("norm.weight") else 0.0
            weights[canonical] = offset + 0.2 * torch.randn(shape, generator=generator)
        weights[key] = weights[canonical]
    # UNetDecoder keeps a reference to the encoder, so its weights appear a second time.
    weights.update({f"decoder.{k}": v for k, v in list(weights.items()) if k.startswith("encoder.")})
    return weights


def _cna(w: dict[str, torch.Tensor], prefix: str, x: torch.Tensor, stride: list[int] | int,
         activation: bool = True) -> torch.Tensor:
    kernel = w[f"{prefix}.conv.weight"]
    conv = functional.conv3d if x.ndim == 5 else functional.conv2d
    x = conv(x, kernel, w.get(f"{prefix}.conv.bias"), stride, [(k - 1) // 2 for k in kernel.shape[2:]])
    x = functional.instance_norm(x, weight=w[f"{prefix}.norm.weight"], bias=w[f"{prefix}.norm.bias"], eps=1e-5)
    return functional.leaky_relu(x, 0.01) if activation else x


def _residual_block(w: dict[str, torch.Tensor], prefix: str, x: torch.Tensor, stride: list[int]) -> torch.Tensor:
    shortcut = x
    if any(s != 1 for s in stride):
        pool = functional.avg_pool3d if x.ndim == 5 else functional.avg_pool2d
        shortcut = pool(shortcut, stride, stride)
    for index in (0, 1):
        if f"{prefix}.skip.{index}.conv.weight" in w:
            shortcut = _cna(w, f"{prefix}.skip.{index}", shortcut, 1, activation=False)
    out = _cna(w, f"{prefix}.conv2", _cna(w, f"{prefix}.conv1", x, stride), 1, activation=False)
    return functional.leaky_relu(out + shortcut, 0.01)


def _reference_forward(w: dict[str, torch.Tensor], layout: Layout, x: torch.Tensor) -> torch.Tensor:
    """nnU-Net's U-Net (no deep supervision), evaluated straight from its named weights."""
    if layout.residual:
        x = _cna(w, "encoder.stem.convs.0", x, 1)
    skips = []
    for stage, stride in enumerate(layout.strides):
        for index in range(layout.blocks[stage]):
            step = stride if index == 0 else 1
            if layout.residual:
                x = _residual_block(w, f"encoder.stages.{stage}.blocks.{index}", x, [1] * layout.ndim
                                    if index else stride)
            else:
                x = _cna(w, f"encoder.stages.{stage}.0.convs.{index}", x, step)
        skips.append(x)
    transposed = functional.conv_transpose3d if x.ndim == 5 else functional.conv_transpose2d
    conv = functional.conv3d if x.ndim == 5 else functional.conv2d
    for level in range(len(layout.features) - 1):
        up = transposed(x, w[f"decoder.transpconvs.{level}.weight"], w.get(f"decoder.transpconvs.{level}.bias"),
                        layout.strides[-(level + 1)])
        x = torch.cat((up, skips[-(level + 2)]), dim=1)
        for index in range(layout.decoder_convs[level]):
            x = _cna(w, f"decoder.stages.{level}.convs.{index}", x, 1)
    last = len(layout.features) - 2
    return conv(x, w[f"decoder.seg_layers.{last}.weight"], w[f"decoder.seg_layers.{last}.bias"])


# -- nnU-Net model folders ------------------------------------------------------------------------------------


def _configuration(layout: Layout) -> dict[str, Any]:
    spacing = [1.0, 1.0] if layout.ndim == 2 else [3.0, 1.0, 1.0]
    resampling = {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None}
    arch = {"n_stages": len(layout.features), "features_per_stage": list(layout.features),
            "conv_op": f"torch.nn.modules.conv.Conv{layout.ndim}d", "kernel_sizes": layout.kernels,
            "strides": layout.strides, "n_conv_per_stage_decoder": list(layout.decoder_convs),
            "conv_bias": layout.conv_bias, "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{layout.ndim}d",
            "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}}
    arch["n_blocks_per_stage" if layout.residual else "n_conv_per_stage"] = list(layout.blocks)
    network = "ResidualEncoderUNet" if layout.residual else "PlainConvUNet"
    return {
        "data_identifier": f"nnUNetPlans_{layout.ndim}d", "preprocessor_name": "DefaultPreprocessor",
        "batch_size": 2, "patch_size": layout.patch, "median_image_size_in_voxels": [8.0, 12.0, 11.5][-layout.ndim:],
        "spacing": spacing, "normalization_schemes": ["CTNormalization", "ZScoreNormalization"][:layout.in_channels],
        "use_mask_for_norm": [False, False][:layout.in_channels],
        "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": resampling,
        "resampling_fn_seg_kwargs": {**resampling, "is_seg": True, "order": 1},
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": {**resampling, "order": 1},
        "architecture": {"network_class_name": f"dynamic_network_architectures.architectures.unet.{network}",
                         "arch_kwargs": arch, "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]},
        "batch_dice": layout.ndim == 3,
    }


def _plans(layout: Layout, configuration: str) -> dict[str, Any]:
    return {
        "dataset_name": "Dataset999_Tiny", "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [3.0, 1.0, 1.0], "original_median_shape_after_transp": [8, 12, 12],
        "image_reader_writer": "SimpleITKIO", "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
        "configurations": {configuration: _configuration(layout)},
        "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {
            "0": {"max": 260.0, "mean": 148.5, "median": 150.0, "min": 60.0, "percentile_00_5": 80.0,
                  "percentile_99_5": 220.0, "std": 21.25},
            "1": {"max": 300.0, "mean": 220.0, "median": 221.0, "min": 150.0, "percentile_00_5": 170.0,
                  "percentile_99_5": 280.0, "std": 20.0}},
    }


def write_nnunet_folder(root: Path, layout: Layout, fold: str = "0", trainer: str = TRAINER,
                        weights: dict[str, torch.Tensor] | None = None) -> Path:
    """``<root>/<trainer>__nnUNetPlans__<2d|3d_fullres>`` as nnU-Net v2 writes it after training one fold."""
    configuration = "2d" if layout.ndim == 2 else "3d_fullres"
    folder = root / f"{trainer}__nnUNetPlans__{configuration}"
    (folder / f"fold_{fold}").mkdir(parents=True, exist_ok=True)
    (folder / "plans.json").write_text(json.dumps(_plans(layout, configuration), indent=4))
    channels = {"0": "CT", "1": "MR"}
    (folder / "dataset.json").write_text(json.dumps({
        "channel_names": {k: v for k, v in channels.items() if int(k) < layout.in_channels},
        "labels": {"background": 0, "organ": 1, "corner": 2}, "numTraining": 3, "file_ending": ".nii.gz"}))
    (folder / "dataset_fingerprint.json").write_text(json.dumps({"spacings": [[3.0, 1.0, 1.0]] * 3}))
    torch.save({
        "network_weights": weights if weights is not None else _nnunet_weights(layout),
        "optimizer_state": {}, "grad_scaler_state": None, "current_epoch": 2, "_best_ema": np.float32(0.5),
        "logging": {"mean_fg_dice": [np.float32(0.1), np.float64(0.2)], "epoch_end_timestamps": [1.5, 2.5]},
        "init_args": {"plans": _plans(layout, configuration), "configuration": configuration, "fold": fold},
        "trainer_name": trainer, "inference_allowed_mirroring_axes": tuple(range(layout.ndim)),
    }, folder / f"fold_{fold}" / "checkpoint_final.pth")
    return folder


# -- tests ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", [PLAIN_2D, RESIDUAL_3D, Layout(ndim=3, residual=False, conv_bias=False),
                                    Layout(ndim=2, residual=True, blocks=(1, 1, 2), decoder_convs=(1, 2),
                                           conv_bias=False, in_channels=1)],
                         ids=["plain-2d", "residual-3d", "plain-3d-no-bias", "residual-2d-no-bias"])
def test_every_weight_is_mapped(tmp_path: Path, layout: Layout) -> None:
    folder = write_nnunet_folder(tmp_path, layout)
    model = load_nnunet_model(folder, (0,), "checkpoint_final.pth")
    x = torch.randn(2, layout.in_channels, *layout.patch, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = _reference_forward(_nnunet_weights(layout), layout, x)
        actual = model.networks[0](x)
    assert model.num_outputs == layout.num_classes
    assert model.mirror_axes == tuple(range(layout.ndim))
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)


def test_plans_are_converted(tmp_path: Path) -> None:
    model = load_nnunet_model(write_nnunet_folder(tmp_path, RESIDUAL_3D), (0,), "checkpoint_final.pt")
    config = model.configuration
    assert (config.name, config.patch_size, config.spacing) == ("3d_fullres", (8, 16, 16), (3.0, 1.0, 1.0))
    assert config.network.encoder == "residual" and config.network.blocks_per_stage == (1, 2, 2)
    # CT normalisation uses the dataset-wide foreground statistics stored in the plans, exactly.
    ct, mr = config.normalization
    assert (ct.scheme, ct.clip_min, ct.clip_max, ct.mean, ct.std) == ("ct", 80.0, 220.0, 148.5, 21.25)
    assert (mr.scheme, mr.use_nonzero_mask) == ("zscore", False)
    assert (config.resampling.image_order, config.resampling.out_of_plane_order) == (3, 0)
    assert model.plans.axis_order == (0, 1, 2) and model.plans.original_median_spacing == (3.0, 1.0, 1.0)


def test_inherits_from_and_transpose_are_resolved() -> None:
    plans = _plans(RESIDUAL_3D, "3d_fullres")
    plans["configurations"]["3d_small"] = {"inherits_from": "3d_fullres", "batch_size": 1, "spacing": [1.0, 1.0, 3.0]}
    plans["transpose_forward"], plans["transpose_backward"] = [2, 0, 1], [1, 2, 0]
    converted = convert_nnunet_plans(plans, "3d_small", 2, Path("plans.json"))
    config = converted.configuration("3d_small")
    assert (config.batch_size, config.spacing, config.patch_size) == (1, (1.0, 1.0, 3.0), (8, 16, 16))
    assert converted.axis_order == (2, 0, 1)
    assert converted.original_median_spacing == (1.0, 1.0, 3.0)  # raw axis order: after[i] = raw[forward[i]]


def test_detects_nnunet_folders(tmp_path: Path) -> None:
    assert is_nnunet_model_folder(write_nnunet_folder(tmp_path, PLAIN_2D))
    (tmp_path / "autounet").mkdir()
    (tmp_path / "autounet" / "plans.json").write_text(json.dumps({"schema_version": 1, "configurations": {}}))
    assert not is_nnunet_model_folder(tmp_path / "autounet")
    assert not is_nnunet_model_folder(tmp_path / "missing")


def test_fold_all(tmp_path: Path) -> None:
    folder = write_nnunet_folder(tmp_path, PLAIN_2D, fold="all")
    model = load_nnunet_model(folder, ("all",))
    assert len(model.networks) == 1


def test_predict_cli_on_nnunet_folder(tmp_path: Path) -> None:
    dataset = write_tiny_dataset(tmp_path / "raw", num_cases=2, num_channels=2)
    folder = write_nnunet_folder(tmp_path / "results", RESIDUAL_3D)
    # No -f and no --checkpoint: the folds holding nnU-Net's checkpoint_final.pth are found.
    _assert_predicts_in_input_geometry(folder, dataset, tmp_path / "out")


def _assert_predicts_in_input_geometry(model_folder: Path, dataset: Path, out: Path) -> None:
    """``predict -m`` on the dataset's training images writes labels of the first image's shape and spacing."""
    assert main(["predict", "-m", str(model_folder), "-i", str(dataset / "imagesTr"), "-o", str(out), "-q"]) == 0
    image, geometry = read_image([dataset / "imagesTr" / "case_000_0000.nii.gz"])
    seg, seg_geometry = read_image([out / "case_000.nii.gz"])
    assert seg.shape[1:] == image.shape[1:] and seg_geometry.spacing == geometry.spacing
    assert set(np.unique(seg)) <= {0, 1, 2}


def test_predictor_dispatches_to_nnunet_loader(tmp_path: Path) -> None:
    dataset = write_tiny_dataset(tmp_path / "raw", num_cases=1, num_channels=2)
    folder = write_nnunet_folder(tmp_path / "results", PLAIN_2D)
    predictor = Predictor.from_model_folder(folder, (0,), "checkpoint_final.pt",
                                            settings=PredictionSettings(use_mirroring=False, show_progress=False))
    image, geometry = read_image([dataset / "imagesTr" / f"case_000_{c:04d}.nii.gz" for c in (0, 1)])
    seg, _ = predictor.predict_array(image, geometry)
    assert seg.shape == image.shape[1:]


def test_unsupported_trainer_is_named(tmp_path: Path) -> None:
    folder = write_nnunet_folder(tmp_path, PLAIN_2D, trainer="MyFancyTrainer")
    with pytest.raises(CheckpointError, match="MyFancyTrainer.*not supported") as info:
        load_nnunet_model(folder, (0,))
    assert info.value.path == folder / "fold_0" / "checkpoint_final.pth"


@pytest.mark.parametrize(("change", "message"), [
    ({"network_class_name": "dynamic_network_architectures.architectures.primus.Primus"}, "Primus.*not supported"),
    ({"arch_kwargs.norm_op": "torch.nn.modules.batchnorm.BatchNorm2d"}, "norm_op.*BatchNorm2d"),
    ({"arch_kwargs.nonlin": "torch.nn.ReLU"}, "nonlin.*ReLU"),
    ({"arch_kwargs.squeeze_excitation": True}, "squeeze_excitation"),
])
def test_unsupported_architecture_is_named(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    folder = write_nnunet_folder(tmp_path, PLAIN_2D)
    plans = json.loads((folder / "plans.json").read_text())
    architecture = plans["configurations"]["2d"]["architecture"]
    for key, value in change.items():
        target, name = (architecture["arch_kwargs"], key.split(".")[1]) if "." in key else (architecture, key)
        target[name] = value
    (folder / "plans.json").write_text(json.dumps(plans))
    with pytest.raises(ConfigError, match=message) as info:
        load_nnunet_model(folder, (0,))
    assert info.value.path == folder / "plans.json"


def test_weights_of_another_network_are_rejected(tmp_path: Path) -> None:
    weights = _nnunet_weights(PLAIN_2D)
    weights["encoder.stages.0.0.convs.0.norm.running_mean"] = torch.zeros(4)  # e.g. a batch-norm trainer
    folder = write_nnunet_folder(tmp_path, PLAIN_2D, weights=weights)
    with pytest.raises(CheckpointError, match="no place.*running_mean"):
        load_nnunet_model(folder, (0,))
    weights = _nnunet_weights(Layout(ndim=2, residual=False, features=(4, 8, 32)))
    folder = write_nnunet_folder(tmp_path / "wide", PLAIN_2D, weights=weights)
    with pytest.raises(CheckpointError, match=r"shape \(32, 8, 3, 3\)"):
        load_nnunet_model(folder, (0,))


def test_missing_checkpoint_and_unsafe_content(tmp_path: Path) -> None:
    folder = write_nnunet_folder(tmp_path, PLAIN_2D)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_nnunet_model(folder, (1,))
    # An arbitrary object in the file is refused, never unpickled.
    torch.save({"network_weights": {}, "trainer_name": TRAINER, "extra": argparse.Namespace(a=1)},
               folder / "fold_0" / "checkpoint_final.pth")
    with pytest.raises(CheckpointError, match="cannot read the nnU-Net checkpoint safely"):
        load_nnunet_model(folder, (0,))


def test_int8_deploy_of_an_nnunet_folder_calibrates_on_its_raw_training_cases(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for module in ("onnx", "onnxruntime", "nncf", "openvino"):
        pytest.importorskip(module)
    import onnx

    # Five labelled cases: the default 5-fold split, so fold 0 trains on four and is checked on one.
    dataset = write_tiny_dataset(tmp_path / "raw", num_cases=5, num_channels=2)
    folder = write_nnunet_folder(tmp_path / "results", PLAIN_2D)
    deployed = tmp_path / "deployed"
    # Random weights: the Dice drop says nothing, so the limits are wide; the check still runs and reports.
    code = main(["deploy", "-m", str(folder), "-d", "999", "-o", str(deployed), "--precision", "int8",
                 "--calibration-patches", "2", "--torchscript", "--check-disable-tta", "--max-mean-drop", "100",
                 "--max-class-drop", "100", "--data-root", str(tmp_path), "-q"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((deployed / "deploy_report.json").read_text())
    assert report["accepted"] and report["folds"][0]["accepted"] == "int8"
    assert "QuantizeLinear" in {node.op_type for node in onnx.load(str(deployed / "fold_0" / "model.onnx")).graph.node}
    _assert_predicts_in_input_geometry(deployed, dataset, tmp_path / "out")


def test_int8_deploy_of_an_nnunet_folder_without_raw_dataset_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnx")
    # The folder's parent names no dataset in raw/ (there is none) and no -d is given.
    folder = write_nnunet_folder(tmp_path / "results" / "Dataset999_Tiny", PLAIN_2D)
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    code = main(["deploy", "-m", str(folder), "-o", str(tmp_path / "deployed"), "--precision", "int8",
                 "--no-accuracy-check", "--data-root", str(tmp_path), "-q"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert str(folder) in err and "-d ID" in err
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before
    assert not (tmp_path / "deployed").exists()


def test_int8_deploy_of_an_nnunet_folder_without_labelled_training_cases_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnx")
    # Two cases and no split file: there is no default 5-fold split, so fold 0 has no training cases.
    write_tiny_dataset(tmp_path / "raw", num_cases=2, num_channels=2)
    folder = write_nnunet_folder(tmp_path / "results", PLAIN_2D)
    code = main(["deploy", "-m", str(folder), "-d", "999", "-o", str(tmp_path / "deployed"), "--precision", "int8",
                 "--no-accuracy-check", "--data-root", str(tmp_path), "-q"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "no labelled training cases of folds 0" in err and "-d ID" in err and "splits_final.json" in err
    assert not (tmp_path / "deployed").exists()
