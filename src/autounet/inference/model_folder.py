"""Loading a model folder: autounet's own, an exported or installed one (same layout), or nnU-Net v2's.

An autounet model folder is a run folder ``results/<Dataset>/<configuration>/`` (other recipes or plans:
``<configuration>__<recipe>__<plans>/``, see :func:`autounet.paths.run_folder_name`) with ``plans.json`` and
``dataset.json`` beside ``fold_<f>/<checkpoint>``. A cascade stage (``3d_cascade_fullres``) brings the model
of its previous stage from the sibling run folder trained the same way (``../3d_lowres``). An nnU-Net v2
folder is converted by :mod:`autounet.inference.nnunet_model`. Either way the result is one
:class:`~autounet.inference.loaded_model.LoadedModel`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autounet.dataset.description import load_dataset_json
from autounet.errors import CheckpointError, ConfigError
from autounet.inference.loaded_model import LoadedModel, check_output_count
from autounet.inference.nnunet_model import is_nnunet_model_folder, load_nnunet_model, nnunet_checkpoint_name
from autounet.io.checkpoints import check_axes, check_weights, load_checkpoint
from autounet.networks.unet import build_network, full_resolution_head_key, inference_state_dict
from autounet.paths import configuration_of_run_folder, sibling_run_folder
from autounet.planning.plans import ConfigurationPlan, load_plans

__all__ = ["FolderLoader", "load_model_folder", "register_model_folder_kind"]

_HASH_CHUNK_BYTES = 8 * 2**20

FolderLoader = Callable[[Path, Sequence["int | str"], str, "str | torch.device"], LoadedModel]
"""``(folder, folds, checkpoint, device) -> LoadedModel`` for one kind of model folder."""

# Other kinds of model folder (e.g. deployed ONNX models), tried first: (name, recognises the folder, loads it).
# Stages above inference register theirs, so a predictor runs any backend without knowing it.
_FOLDER_KINDS: list[tuple[str, Callable[[Path], bool], FolderLoader]] = []


def register_model_folder_kind(name: str, recognise: Callable[[Path], bool], load: FolderLoader) -> None:
    """Let :func:`load_model_folder` load another kind of model folder (its networks any patch callables).

    Raises:
        ValueError: ``name`` is already registered.
    """
    if any(existing == name for existing, _, _ in _FOLDER_KINDS):
        raise ValueError(f"a model folder kind named '{name}' is already registered")
    _FOLDER_KINDS.append((name, recognise, load))


def load_model_folder(model_folder: Path, folds: Sequence[int | str] = (0,), checkpoint: str = "checkpoint_final.pt",
                      device: str | torch.device = "cpu") -> LoadedModel:
    """Load ``plans.json``, ``dataset.json`` and one checkpoint per fold from a model folder.

    Args:
        model_folder: A run folder ``results/<Dataset>/<configuration>[__<recipe>__<plans>]``, an exported or
            installed model (same layout), or an nnU-Net v2 ``<Trainer>__<Plans>__<configuration>`` folder.
        folds: Fold indices or ``"all"``; ``fold_<f>/<checkpoint>`` is loaded for each. Repeating a fold
            loads it twice (an ensemble of identical members).
        checkpoint: Checkpoint file name inside each fold folder.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; where the networks are put.

    Returns:
        The plans, description and one network per fold (eval mode, no deep supervision); for a cascade stage
        also its previous stage's model.

    Raises:
        CheckpointError: Missing folder, plans, checkpoint, or weights that do not fit the plans; for a
            cascade stage, a missing previous-stage folder or fold.
        ConfigError: Folds trained with different configurations.
    """
    model_folder = Path(model_folder)
    for _, recognise, load in _FOLDER_KINDS:
        if recognise(model_folder):
            return load(model_folder, folds, checkpoint, device)
    if is_nnunet_model_folder(model_folder):
        model = load_nnunet_model(model_folder, folds, checkpoint, device)
        return replace(model, origin=_origin(model_folder, folds, nnunet_checkpoint_name(checkpoint), None))
    if not model_folder.is_dir():
        raise CheckpointError("model folder not found; train a configuration first", model_folder)
    for name in ("plans.json", "dataset.json"):
        if not (model_folder / name).is_file():
            raise CheckpointError(f"the model folder lacks {name}; it is not a complete trained model",
                                  model_folder)
    if not folds:
        raise CheckpointError("no fold given", model_folder)
    plans = load_plans(model_folder / "plans.json")
    description = load_dataset_json(model_folder / "dataset.json")
    torch_device = torch.device(device)
    states = [(path, load_checkpoint(path, map_location="cpu"))
              for path in (model_folder / f"fold_{fold}" / checkpoint for fold in folds)]
    configuration = plans.configuration(_configuration_name(states, model_folder))
    previous = None
    in_channels = description.num_channels
    if configuration.previous_stage is not None:
        previous = _load_previous_stage(model_folder, configuration, folds, checkpoint, device)
        in_channels += len(description.foreground_labels)  # one-hot of the previous stage's labels
    networks, num_outputs = [], 0
    for path, state in states:
        network, num_outputs = _load_network(state, configuration, in_channels, path)
        networks.append(network.to(torch_device).eval())
    mirror_axes = check_axes(states[0][1].get("metadata", {}).get("mirror_axes"), configuration.ndim,
                             "metadata.mirror_axes", states[0][0])
    model = LoadedModel(plans=plans, configuration=configuration, description=description,
                        networks=tuple(networks), num_outputs=num_outputs, mirror_axes=mirror_axes,
                        previous_stage=previous, origin=_origin(model_folder, folds, checkpoint, previous))
    check_output_count(model.trained_description, model.num_outputs, model_folder)
    return model


def _origin(model_folder: Path, folds: Sequence[int | str], checkpoint: str, previous: LoadedModel | None) -> str:
    """``<Dataset>/<run folder> (folds ..., <checkpoint>, <digest>)``: the digest covers ``plans.json``,
    ``dataset.json``, each fold's checkpoint (name and contents) and a cascade's previous stage, so retraining,
    other folds or another model in the same place give another origin, and a copied model the same one."""
    digest = hashlib.blake2b(digest_size=16)
    for name in ("plans.json", "dataset.json"):
        digest.update((model_folder / name).read_bytes())
    for fold in folds:
        digest.update(f"fold_{fold}/{checkpoint}\n".encode())
        with (model_folder / f"fold_{fold}" / checkpoint).open("rb") as handle:
            # Just read by torch.load, so served from the page cache; chunks keep memory flat.
            while chunk := handle.read(_HASH_CHUNK_BYTES):
                digest.update(chunk)
    if previous is not None:
        digest.update(previous.origin.encode())
    fold_list = ", ".join(str(f) for f in folds)
    where = f"{model_folder.parent.name}/{model_folder.name}"
    return f"{where} (folds {fold_list}, {checkpoint}, {digest.hexdigest()[:12]})"


def _load_previous_stage(model_folder: Path, configuration: ConfigurationPlan, folds: Sequence[int | str],
                         checkpoint: str, device: str | torch.device) -> LoadedModel:
    """The previous stage of a cascade, from the sibling run folder trained the same way (same recipe and
    plans: ``../<previous_stage>`` for the defaults), with the same folds.

    Raises:
        CheckpointError: The previous stage's folder (naming it) or one of its folds is missing.
    """
    assert configuration.previous_stage is not None
    folder = sibling_run_folder(model_folder, configuration.name, configuration.previous_stage)
    if not folder.is_dir():
        raise CheckpointError(f"configuration '{configuration.name}' is a cascade stage and needs its previous "
                              f"stage '{configuration.previous_stage}', but its model folder is missing; train "
                              f"'{configuration.previous_stage}' with the same folds first", folder)
    return load_model_folder(folder, folds, checkpoint, device)


def _check_metadata(state: dict[str, Any], path: Path) -> None:
    """The checkpoint's ``metadata`` is an object whose configuration, when recorded, is a name."""
    metadata = state.get("metadata", {})
    if not isinstance(metadata, dict) or not isinstance(metadata.get("configuration", ""), str):
        raise CheckpointError("the checkpoint's 'metadata' must be an object naming its configuration", path)


def _configuration_name(states: list[tuple[Path, dict[str, Any]]], model_folder: Path) -> str:
    """The configuration recorded in the checkpoints (else the one the run folder's name says)."""
    for path, state in states:
        _check_metadata(state, path)
    fallback = configuration_of_run_folder(model_folder.name)
    names = {str(state.get("metadata", {}).get("configuration", fallback)) for _, state in states}
    if len(names) > 1:
        raise ConfigError(f"the folds were trained with different configurations: {', '.join(sorted(names))}",
                          model_folder)
    return names.pop()


def _load_network(state: dict[str, Any], configuration: ConfigurationPlan, in_channels: int,
                  path: Path) -> tuple[nn.Module, int]:
    """Build the non-deep-supervision U-Net of ``configuration`` and load a checkpoint's weights into it.

    Returns:
        The network (CPU, train mode) and its number of outputs, read from the head's weight shape.
    """
    weights = check_weights(state, "network", path)
    mapped = inference_state_dict(weights, path)
    # The full-resolution head's output channels; a multi-task early-branching network has one head per task
    # (branches.T.heads.levels.0) and outputs all of theirs.
    name = f"{full_resolution_head_key(1)}.weight"
    heads = [value for key, value in mapped.items()
             if key == name or (key.startswith("branches.") and key.endswith("." + name))]
    if not heads or any(h.ndim != configuration.network.ndim + 2 or h.shape[0] < 1 for h in heads):
        shape = tuple(heads[0].shape) if heads else None
        raise CheckpointError(f"the segmentation head's weight has shape {shape}, not that of a "
                              f"{configuration.network.ndim}D convolution with outputs; the weights do not fit "
                              f"configuration '{configuration.name}'", path)
    num_outputs = sum(int(h.shape[0]) for h in heads)
    network = build_network(configuration.network, in_channels, num_outputs, deep_supervision=False)
    try:
        network.load_state_dict(mapped, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise CheckpointError(f"the weights do not fit configuration '{configuration.name}' with {in_channels} "
                              f"input channel(s): {first}", path) from None
    return network, num_outputs


