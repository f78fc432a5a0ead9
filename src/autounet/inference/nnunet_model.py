"""Predict with a model folder trained by nnU-Net v2, converted on load into autounet's plans and networks.

An nnU-Net v2 model folder is ``<Trainer>__<Plans>__<configuration>/`` holding ``plans.json``,
``dataset.json``, ``dataset_fingerprint.json`` and ``fold_<f>/checkpoint_final.pth``. Its configuration
(spacing, patch, normalisation, resampling, axis order) becomes a :class:`ConfigurationPlan`, and its
``PlainConvUNet`` / ``ResidualEncoderUNet`` weights are mapped onto autounet's U-Net, which has the same layers
under other names; every weight is matched by structure and its shape checked. Only the default trainer family
(``nnUNetTrainer*``) is supported: other trainers may build other networks.

Checkpoints are read with ``torch.load(weights_only=True)``; nnU-Net stores a few numpy scalars in its
training log, so exactly two numpy types (scalar reconstruction and ``dtype``) are allowed while loading.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from autounet.dataset.description import load_dataset_json
from autounet.errors import AutounetError, CheckpointError, ConfigError
from autounet.inference._nnunet_schema import check_nnunet_configuration, check_nnunet_plans
from autounet.inference.loaded_model import LoadedModel, check_output_count
from autounet.io.checkpoints import check_axes, check_weights
from autounet.io.jsonio import read_json
from autounet.networks.spec import UNetSpec
from autounet.networks.unet import build_network
from autounet.planning.plans import (
    ChannelNormalization,
    ConfigurationPlan,
    NormalizationScheme,
    Plans,
    ResamplingPlan,
    validate_plans,
)

__all__ = [
    "convert_nnunet_plans",
    "is_nnunet_model_folder",
    "load_nnunet_checkpoint",
    "load_nnunet_model",
    "map_nnunet_state_dict",
    "nnunet_checkpoint_name",
]

logger = logging.getLogger(__name__)

_NORMALIZATION: dict[str, NormalizationScheme] = {
    "CTNormalization": "ct",
    "ZScoreNormalization": "zscore",
    "RescaleTo01Normalization": "rescale_0_1",
    "RGBTo0_1Normalization": "rgb_to_0_1",
    "NoNormalization": "none",
}
_ARCHITECTURES = {
    "dynamic_network_architectures.architectures.unet.PlainConvUNet": "plain",
    "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet": "residual",
}
_RESAMPLING_FN = "resample_data_or_seg_to_shape"
# nnU-Net's ANISO_THRESHOLD: the spacing ratio above which the out-of-plane axis is resampled separately.
_ANISOTROPY_THRESHOLD = 3.0
_KNOWN_ARCH_KWARGS = frozenset({
    "n_stages", "features_per_stage", "conv_op", "kernel_sizes", "strides", "n_conv_per_stage", "n_blocks_per_stage",
    "n_conv_per_stage_decoder", "conv_bias", "norm_op", "norm_op_kwargs", "dropout_op", "dropout_op_kwargs",
    "nonlin", "nonlin_kwargs", "nonlin_first", "block", "bottleneck_channels", "stem_channels",
})
# numpy >= 1.25 pickles a dtype through its class (numpy.dtypes.Float32DType, ...).
_NUMERIC_DTYPE_CLASSES = tuple({type(np.dtype(t)) for t in (np.float16, np.float32, np.float64, np.int8, np.int16,
                                                           np.int32, np.int64, np.uint8, np.bool_)})
# Position inside autounet's ConvNormAct (conv, norm, nonlinearity) -> nnU-Net's ConvDropoutNormReLU attribute.
_PART = {"0": "conv", "1": "norm"}


def is_nnunet_model_folder(path: str | Path) -> bool:
    """Whether ``path`` is a model folder written by nnU-Net v2 (its ``plans.json`` names a ``plans_name``
    and describes networks by ``architecture``), as opposed to an autounet one."""
    plans_file = Path(path) / "plans.json"
    if not plans_file.is_file():
        return False
    try:
        data = read_json(plans_file)
    except AutounetError:
        return False
    return isinstance(data, dict) and "plans_name" in data and isinstance(data.get("configurations"), dict)


def nnunet_checkpoint_name(name: str) -> str:
    """nnU-Net's file name for a checkpoint: autounet's ``checkpoint_final.pt`` is ``checkpoint_final.pth``."""
    return f"{name}h" if name.endswith(".pt") else name


def load_nnunet_model(folder: str | Path, folds: Sequence[int | str] = (0,),
                      checkpoint_name: str = "checkpoint_final.pth", device: str | torch.device = "cpu",
                      ) -> LoadedModel:
    """Load an nnU-Net v2 trained-model folder for prediction with autounet's engine.

    Args:
        folder: ``<Trainer>__<Plans>__<configuration>`` folder with ``plans.json`` and ``dataset.json``.
        folds: Fold indices or ``"all"`` (``fold_all``); one network per entry.
        checkpoint_name: File in each fold folder; a ``.pt`` name is read as nnU-Net's ``.pth``.
        device: Where the networks are put.

    Returns:
        The converted plans (holding only the model's configuration), dataset description, one network per
        fold in eval mode without deep supervision, and the mirror axes the checkpoint allows.

    Raises:
        CheckpointError: Missing files, an unsupported trainer, or weights that do not fit the plans.
        ConfigError: An architecture, normalisation or resampling autounet cannot reproduce.
    """
    folder = Path(folder)
    for name in ("plans.json", "dataset.json"):
        if not (folder / name).is_file():
            raise CheckpointError(f"the nnU-Net model folder lacks {name}", folder)
    if not folds:
        raise CheckpointError("no fold given", folder)
    description = load_dataset_json(folder / "dataset.json")
    raw_plans = read_json(folder / "plans.json")
    paths = [folder / f"fold_{fold}" / nnunet_checkpoint_name(checkpoint_name) for fold in folds]
    states = [load_nnunet_checkpoint(path) for path in paths]
    configuration_name = _configuration_name(states, paths, folder)
    plans = convert_nnunet_plans(raw_plans, configuration_name, description.num_channels, folder / "plans.json")
    configuration = plans.configuration(configuration_name)
    conv_bias = bool(_resolve_configuration(raw_plans, configuration_name, folder / "plans.json")
                     ["architecture"]["arch_kwargs"].get("conv_bias", False))
    networks, num_outputs = [], 0
    for path, state in zip(paths, states, strict=True):
        network = _build_loaded_network(state["network_weights"], configuration.network, description.num_channels,
                                        conv_bias, path)
        num_outputs = network.heads.levels[0].out_channels
        networks.append(network.to(device).eval())
    check_output_count(description, num_outputs, folder)
    mirror = check_axes(states[0].get("inference_allowed_mirroring_axes"), configuration.ndim,
                        "inference_allowed_mirroring_axes", paths[0])
    return LoadedModel(plans=plans, configuration=configuration, description=description, networks=tuple(networks),
                       num_outputs=num_outputs, mirror_axes=mirror)


def load_nnunet_checkpoint(path: Path) -> dict[str, Any]:
    """Read an nnU-Net checkpoint without unpickling arbitrary objects.

    Raises:
        CheckpointError: Missing or unreadable file, no ``network_weights``, or a trainer outside the default
            ``nnUNetTrainer`` family.
    """
    if not path.is_file():
        raise CheckpointError("checkpoint not found; train this fold with nnU-Net first or pick other folds", path)
    # nnU-Net's training log holds numpy scalars; these types only rebuild numbers, never call code.
    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray  # numpy 2 / numpy 1
    allowed = [multiarray.scalar, np.dtype, *_NUMERIC_DTYPE_CLASSES]
    try:
        with torch.serialization.safe_globals(allowed):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means an unusable file
        raise CheckpointError(f"cannot read the nnU-Net checkpoint safely ({exc.__class__.__name__}: "
                              f"{str(exc).splitlines()[0][:200]})", path) from None
    if not isinstance(state, dict) or not isinstance(state.get("network_weights"), dict):
        raise CheckpointError("not an nnU-Net checkpoint (no 'network_weights')", path)
    check_weights(state, "network_weights", path)
    check_axes(state.get("inference_allowed_mirroring_axes"), 3, "inference_allowed_mirroring_axes", path)
    trainer = str(state.get("trainer_name", ""))
    if not trainer.startswith("nnUNetTrainer"):
        raise CheckpointError(f"trainer '{trainer}' is not supported; only nnU-Net's default trainer family "
                              "(nnUNetTrainer*) builds the networks autounet can load", path)
    return state


def convert_nnunet_plans(data: Any, configuration_name: str, num_channels: int, path: Path) -> Plans:
    """Convert nnU-Net v2 ``plans.json`` content into autounet :class:`Plans` holding one configuration.

    Args:
        data: Parsed ``plans.json``.
        configuration_name: The configuration to convert (``inherits_from`` is resolved).
        num_channels: Input channels (from ``dataset.json``).
        path: The plans file, for error messages.

    Raises:
        ConfigError: Unknown configuration or anything autounet cannot reproduce exactly.
    """
    check_nnunet_plans(data, path)
    config = _resolve_configuration(data, configuration_name, path)
    check_nnunet_configuration(config, configuration_name, path)
    forward = tuple(int(a) for a in data.get("transpose_forward") or range(len(config["spacing"])))
    if sorted(forward) != list(range(len(forward))):
        raise ConfigError(f"field 'transpose_forward' must be a permutation of the axes, got {list(forward)}", path)
    spec = _network_spec(config, path)
    properties = data.get("foreground_intensity_properties_per_channel") or {}
    configuration = ConfigurationPlan(
        name=configuration_name, ndim=spec.ndim, spacing=tuple(float(s) for s in config["spacing"]),
        median_shape=tuple(round(float(s)) for s in config.get("median_image_size_in_voxels") or config["patch_size"]),
        patch_size=tuple(int(p) for p in config["patch_size"]), batch_size=int(config.get("batch_size") or 1),
        network=spec, normalization=_normalization(config, properties, num_channels, path),
        resampling=_resampling(config, path), data_identifier=str(config.get("data_identifier", "")),
        previous_stage=config.get("previous_stage"), batch_dice=bool(config.get("batch_dice", False)))
    plans = Plans(schema_version=Plans.SCHEMA_VERSION, dataset_name=str(data.get("dataset_name") or ""),
                  planner=f"nnU-Net {data.get('plans_name') or ''}", gpu_memory_gib=0.0, axis_order=forward,
                  original_median_spacing=_untransposed(data.get("original_median_spacing_after_transp"), forward),
                  original_median_shape=tuple(round(s) for s in
                                              _untransposed(data.get("original_median_shape_after_transp"), forward)),
                  configurations={configuration_name: configuration})
    validate_plans(plans, path)
    return plans


def map_nnunet_state_dict(source: dict[str, torch.Tensor], network: nn.Module, conv_bias: bool,
                          path: Path) -> dict[str, torch.Tensor]:
    """nnU-Net ``network_weights`` renamed to the keys of an autounet U-Net built without deep supervision.

    Each autounet key is translated to nnU-Net's name by the layer structure both share; shapes must agree,
    and every nnU-Net weight must be used except the duplicates nnU-Net's state dict holds (``all_modules.*``
    aliases, the encoder repeated under ``decoder.encoder``) and the lower-resolution deep-supervision heads.
    Without conv biases (``conv_bias: false``) the missing biases are zeros, which is the same network.

    Raises:
        CheckpointError: A weight missing, of another shape, or left over (another architecture).
    """
    weights = {_strip_wrappers(key): value for key, value in source.items()}
    spec: UNetSpec = network.spec  # type: ignore[assignment]
    last_head = spec.num_stages - 2
    mapped, used = {}, set()
    for key, target in network.state_dict().items():
        name = _nnunet_key(key, spec.encoder, last_head)
        if name not in weights:
            if not conv_bias and _is_conv_bias(name):
                mapped[key] = torch.zeros_like(target)
                continue
            raise CheckpointError(f"the weights lack '{name}' (autounet '{key}'); they do not fit the "
                                  "architecture in plans.json", path)
        if tuple(weights[name].shape) != tuple(target.shape):
            raise CheckpointError(f"'{name}' has shape {tuple(weights[name].shape)} but the plans' architecture "
                                  f"needs {tuple(target.shape)}", path)
        mapped[key] = weights[name]
        used.add(name)
    extra = sorted(k for k in weights if k not in used and not _is_duplicate_or_head(k, last_head))
    if extra:
        raise CheckpointError(f"{len(extra)} weight(s) have no place in the plans' architecture, e.g. '{extra[0]}' "
                              "(a trainer with another network?)", path)
    return mapped


def _nnunet_key(key: str, encoder: str, last_head: int) -> str:
    """nnU-Net's (dynamic_network_architectures') name of an autounet U-Net state-dict key."""
    parts = key.split(".")
    if parts[0] == "encoder" and parts[1] == "stem":  # stem.<0|1>.<param>
        return f"encoder.stem.convs.0.{_PART[parts[2]]}.{parts[3]}"
    if parts[0] == "encoder" and encoder == "plain":  # stages.<s>.<i>.<0|1>.<param>
        return f"encoder.stages.{parts[2]}.0.convs.{parts[3]}.{_PART[parts[4]]}.{parts[5]}"
    if parts[0] == "encoder" and parts[4] == "shortcut":  # stages.<s>.<b>.shortcut.<k>.<0|1>.<param>
        return f"encoder.stages.{parts[2]}.blocks.{parts[3]}.skip.{parts[5]}.{_PART[parts[6]]}.{parts[7]}"
    if parts[0] == "encoder":  # stages.<s>.<b>.<conv1|conv2>.<0|1>.<param>
        return f"encoder.stages.{parts[2]}.blocks.{parts[3]}.{parts[4]}.{_PART[parts[5]]}.{parts[6]}"
    if parts[1] == "upsamplers":
        return f"decoder.transpconvs.{parts[2]}.{parts[3]}"
    if parts[1] == "stages":  # stages.<i>.<j>.<0|1>.<param>
        return f"decoder.stages.{parts[2]}.convs.{parts[3]}.{_PART[parts[4]]}.{parts[5]}"
    return f"decoder.seg_layers.{last_head}.{parts[3]}"  # heads.levels.0.<param>: the full-resolution head


def _strip_wrappers(key: str) -> str:
    # torch.compile and DataParallel wrappers prefix every key; the weights are the same.
    for prefix in ("_orig_mod.", "module."):
        key = key.removeprefix(prefix)
    return key


def _is_conv_bias(name: str) -> bool:
    return name.endswith(".conv.bias") or (name.startswith("decoder.transpconvs.") and name.endswith(".bias"))


def _is_duplicate_or_head(name: str, last_head: int) -> bool:
    if name.startswith("decoder.encoder.") or ".all_modules." in name:
        return True
    match = re.match(r"^decoder\.seg_layers\.(\d+)\.", name)
    return match is not None and int(match.group(1)) < last_head


def _build_loaded_network(weights: dict[str, torch.Tensor], spec: UNetSpec, in_channels: int, conv_bias: bool,
                          path: Path) -> nn.Module:
    """autounet's U-Net for ``spec`` (no deep supervision) holding the nnU-Net weights, on the CPU."""
    head = weights.get(f"decoder.seg_layers.{spec.num_stages - 2}.weight",
                       weights.get(f"_orig_mod.decoder.seg_layers.{spec.num_stages - 2}.weight"))
    if head is None or head.ndim != spec.ndim + 2 or head.shape[0] < 1:
        raise CheckpointError(f"the weights hold no full-resolution segmentation head for {spec.num_stages} "
                              f"stages of a {spec.ndim}D network (decoder.seg_layers)", path)
    network = build_network(spec, in_channels, int(head.shape[0]), deep_supervision=False)
    network.load_state_dict(map_nnunet_state_dict(weights, network, conv_bias, path), strict=True)
    return network


def _configuration_name(states: list[dict[str, Any]], paths: list[Path], folder: Path) -> str:
    """The configuration the checkpoints were trained with, else the last ``__`` part of the folder name."""
    names = set()
    for state in states:
        init_args = state.get("init_args")
        recorded = init_args.get("configuration") if isinstance(init_args, dict) else None
        names.add(str(recorded) if recorded else folder.name.split("__")[-1])
    if len(names) > 1:
        raise ConfigError(f"the folds were trained with different configurations: {', '.join(sorted(names))}",
                          paths[0])
    return names.pop()


def _resolve_configuration(data: dict[str, Any], name: str, path: Path, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """A configuration of nnU-Net plans with ``inherits_from`` merged in (the child's keys win)."""
    configurations = data["configurations"]
    if name not in configurations:
        raise ConfigError(f"no configuration '{name}' in the plans; planned: {', '.join(configurations)}", path)
    if name in seen:
        raise ConfigError(f"configurations inherit in a cycle: {' -> '.join((*seen, name))}", path)
    config = dict(configurations[name])
    parent = config.pop("inherits_from", None)
    if parent is None:
        return config
    if not isinstance(parent, str):
        raise ConfigError(f"field 'configurations.{name}.inherits_from' must be a configuration name, got {parent!r}",
                          path)
    return {**_resolve_configuration(data, parent, path, (*seen, name)), **config}


def _network_spec(config: dict[str, Any], path: Path) -> UNetSpec:
    """The :class:`UNetSpec` of an nnU-Net ``architecture`` entry, rejecting what autounet cannot build."""
    architecture = config.get("architecture") or {}
    class_name = architecture.get("network_class_name", "<none>")
    if class_name not in _ARCHITECTURES:
        raise ConfigError(f"network '{class_name}' is not supported; autounet loads "
                          f"{' and '.join(n.rsplit('.', 1)[1] for n in _ARCHITECTURES)}", path)
    kwargs = architecture.get("arch_kwargs", {})
    unknown = sorted(set(kwargs) - _KNOWN_ARCH_KWARGS)
    if unknown:
        raise ConfigError(f"architecture option(s) {', '.join(unknown)} are not supported", path)
    ndim = len(config["patch_size"])
    _check_layers(kwargs, ndim, path)
    encoder = _ARCHITECTURES[class_name]
    n = int(kwargs["n_stages"])
    blocks = kwargs.get("n_blocks_per_stage" if encoder == "residual" else "n_conv_per_stage")
    if blocks is None:
        key = "n_blocks_per_stage" if encoder == "residual" else "n_conv_per_stage"
        raise ConfigError(f"field 'architecture.arch_kwargs.{key}' is missing", path)
    try:
        return UNetSpec(ndim=ndim, encoder=encoder,  # type: ignore[arg-type]
                        features_per_stage=_per_stage(kwargs["features_per_stage"], n),
                        kernel_sizes=tuple(_per_axis(k, ndim) for k in _listed(kwargs["kernel_sizes"], n)),
                        strides=tuple(_per_axis(s, ndim) for s in _listed(kwargs["strides"], n)),
                        blocks_per_stage=_per_stage(blocks, n),
                        convs_per_decoder_stage=_per_stage(kwargs["n_conv_per_stage_decoder"], n - 1))
    except ValueError as exc:
        raise ConfigError(f"field 'architecture.arch_kwargs' does not describe a {ndim}D U-Net of {n} stages: {exc}",
                          path) from None


def _check_layers(kwargs: dict[str, Any], ndim: int, path: Path) -> None:
    """Reject layer types and options under which autounet's layers would compute something else."""
    suffix = f"{ndim}d"
    expected = {"conv_op": f"torch.nn.modules.conv.Conv{suffix}",
                "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{suffix}", "nonlin": "torch.nn.LeakyReLU"}
    for key, value in expected.items():
        found = str(kwargs.get(key)).replace("torch.nn.modules.activation.", "torch.nn.")
        if found != value:
            raise ConfigError(f"architecture {key} '{kwargs.get(key)}' is not supported (autounet uses {value})", path)
    norm = kwargs.get("norm_op_kwargs") or {}
    if not norm.get("affine", False) or float(_value(norm, "eps", 1e-5)) != 1e-5 or norm.get("track_running_stats"):
        raise ConfigError(f"norm_op_kwargs {norm} are not supported (affine instance norm, eps 1e-5)", path)
    slope = float(_value(kwargs.get("nonlin_kwargs") or {}, "negative_slope", 1e-2))
    if slope != 1e-2:
        raise ConfigError(f"LeakyReLU negative_slope {slope} is not supported (0.01)", path)
    block = str(kwargs.get("block") or "BasicBlockD").rsplit(".", 1)[-1]
    if kwargs.get("nonlin_first") or block != "BasicBlockD" or kwargs.get("bottleneck_channels") is not None:
        raise ConfigError("only conv-norm-nonlinearity order with basic residual blocks is supported", path)
    stem = kwargs.get("stem_channels")
    if stem is not None and stem != _per_stage(kwargs["features_per_stage"], int(kwargs["n_stages"]))[0]:
        raise ConfigError(f"stem_channels {stem} differing from the first stage's features is not supported", path)
    # Dropout is the identity in eval mode, so dropout_op needs no check.


def _normalization(config: dict[str, Any], properties: dict[str, Any], num_channels: int,
                   path: Path) -> tuple[ChannelNormalization, ...]:
    """Per-channel normalisation; CT uses the dataset-wide foreground statistics stored in the plans."""
    schemes = list(config.get("normalization_schemes", []))
    masks = list(_value(config, "use_mask_for_norm", [False] * len(schemes)))
    if len(schemes) != num_channels or len(masks) != num_channels:
        raise ConfigError(f"the plans normalise {len(schemes)} channel(s) but dataset.json has {num_channels}", path)
    result = []
    for channel, (scheme, use_mask) in enumerate(zip(schemes, masks, strict=True)):
        if scheme not in _NORMALIZATION:
            raise ConfigError(f"normalisation '{scheme}' is not supported (known: {', '.join(_NORMALIZATION)})", path)
        if _NORMALIZATION[scheme] != "ct":
            result.append(ChannelNormalization(_NORMALIZATION[scheme], use_nonzero_mask=bool(use_mask)))
            continue
        stats = properties.get(str(channel))
        if not isinstance(stats, dict) or not {"percentile_00_5", "percentile_99_5", "mean", "std"} <= set(stats):
            raise ConfigError(f"CTNormalization of channel {channel} needs foreground_intensity_properties_per_"
                              "channel with percentile_00_5, percentile_99_5, mean and std", path)
        result.append(ChannelNormalization("ct", use_nonzero_mask=bool(use_mask),
                                           clip_min=float(stats["percentile_00_5"]),
                                           clip_max=float(stats["percentile_99_5"]),
                                           mean=float(stats["mean"]), std=float(stats["std"])))
    return tuple(result)


def _resampling(config: dict[str, Any], path: Path) -> ResamplingPlan:
    """nnU-Net's default resampling settings; anything else cannot be reproduced and is rejected."""
    kinds = {"data": None, "seg": None, "probabilities": None}
    for kind in kinds:
        function = _value(config, f"resampling_fn_{kind}", _RESAMPLING_FN)
        kwargs = config.get(f"resampling_fn_{kind}_kwargs") or {}
        if function != _RESAMPLING_FN or kwargs.get("force_separate_z") is not None:
            raise ConfigError(f"resampling_fn_{kind} '{function}' with {kwargs} is not supported; autounet "
                              f"reproduces {_RESAMPLING_FN} with force_separate_z null", path)
        kinds[kind] = kwargs
    data, seg, probabilities = kinds["data"], kinds["seg"], kinds["probabilities"]
    order_z = int(_value(data, "order_z", 0))
    # Predictions resample probabilities linearly with the data's out-of-plane order (autounet's export).
    if int(_value(probabilities, "order", 1)) != 1 or int(_value(probabilities, "order_z", 0)) != order_z:
        raise ConfigError(f"resampling_fn_probabilities_kwargs {probabilities} are not supported (order 1, "
                          f"order_z {order_z})", path)
    return ResamplingPlan(image_order=int(_value(data, "order", 3)), label_order=int(_value(seg, "order", 1)),
                          out_of_plane_order=order_z, anisotropy_threshold=_ANISOTROPY_THRESHOLD)


def _untransposed(values: Sequence[float] | None, forward: tuple[int, ...]) -> tuple[float, ...]:
    """Undo nnU-Net's ``transpose_forward`` on a per-axis list (``after[i] = raw[forward[i]]``)."""
    if not values or len(values) != len(forward):
        return tuple(float(v) for v in values or ())
    raw = [0.0] * len(forward)
    for index, axis in enumerate(forward):
        raw[axis] = float(values[index])
    return tuple(raw)


def _value(mapping: dict[str, Any], key: str, default: Any) -> Any:
    """``mapping[key]``, or ``default`` when it is absent or ``null`` (the schema allows both)."""
    value = mapping.get(key)
    return default if value is None else value


def _listed(value: Any, n: int) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value] * n


def _per_stage(value: Any, n: int) -> tuple[int, ...]:
    return tuple(int(v) for v in _listed(value, n))


def _per_axis(value: Any, ndim: int) -> tuple[int, ...]:
    return tuple(int(v) for v in (value if isinstance(value, (list, tuple)) else [value] * ndim))
