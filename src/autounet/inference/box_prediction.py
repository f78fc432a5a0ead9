"""Boxes of a whole image: detectors run over sliding windows, mirrored passes and folds, fused into one set
and mapped back to the input's voxel grid and world coordinates.

Windows are placed as for segmentation (:func:`~autounet.inference.sliding_window.iter_window_batches`). For
every window batch, every fold and every subset of the mirror axes, the detector sees the (flipped) patches;
its boxes are flipped back, shifted into the image and handed to a
:class:`~autounet.detection.detections.BoxMerger`, which fuses all of them by weighted box clustering per
class. Only boxes are kept per window, never dense outputs, so memory does not grow with the image.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from autounet.dataset.description import DatasetDescription, load_dataset_json
from autounet.dataset.raw import case_channel_files, group_channel_files, no_case_error
from autounet.detection.box_files import (
    OriginalBox,
    box_file_name,
    box_map_name,
    boxes_in_world,
    paint_boxes,
    write_boxes_json,
)
from autounet.detection.boxes import flip_boxes
from autounet.detection.detections import BoxFusionSettings, BoxMerger, Detections, Detector, fusion_settings
from autounet.detection.inference_parameters import check_inference_parameters, swept_inference_of_folds
from autounet.detection.retina_unet import PostprocessSettings, build_planned_detector, select_detections
from autounet.errors import AutounetError, CheckpointError, ConfigError, DatasetError
from autounet.inference._output_folder import check_output_apart_from_input
from autounet.inference.nnunet_model import is_nnunet_model_folder
from autounet.inference.sliding_window import SlidingWindowSettings, iter_window_batches, pad_to_patch
from autounet.inference.tta import mirror_dim_combinations
from autounet.io.checkpoints import check_axes, check_matches, check_weights, load_checkpoint
from autounet.io.geometry import ImageGeometry
from autounet.io.images import read_image, write_segmentation
from autounet.paths import configuration_of_run_folder
from autounet.planning.plans import ConfigurationPlan, DetectionInference, Plans, load_plans
from autounet.preprocessing.case import preprocess_case
from autounet.preprocessing.properties import CaseProperties
from autounet.progress import progress

__all__ = ["BoxPredictor", "DetectionModel", "WindowDetections", "boxes_to_original", "collect_window_detections",
           "is_detection_model_folder", "load_detection_model", "predict_boxes_sliding_window"]

logger = logging.getLogger(__name__)


def predict_boxes_sliding_window(detectors: Sequence[Detector], image: torch.Tensor,
                                 settings: SlidingWindowSettings, fusion: BoxFusionSettings,
                                 device: torch.device | None = None) -> Detections:
    """Detections of a preprocessed image from every window, mirrored pass and detector (fold).

    Args:
        detectors: One per fold; each maps ``(B, C, *patch)`` patches on ``device`` to one
            :class:`Detections` per patch in patch coordinates.
        image: Preprocessed image ``(C, *spatial)`` with as many spatial axes as the patch.
        settings: Window placement, mirroring and batching (``use_gaussian`` is not used: boxes are weighted
            by their position in the window instead).
        fusion: How the boxes are fused and filtered.
        device: Where the detectors run; default ``image.device``.

    Returns:
        The fused detections in the image's voxel coordinates, on the CPU.

    Raises:
        ValueError: No detector, or a patch with fewer axes than the image (boxes need whole volumes).
    """
    with torch.inference_mode():
        padded, crop, passes = _window_passes(detectors, image, settings, device)
        merger = BoxMerger(padded, crop, settings.patch_size, fusion)
        for start, detections in passes:  # only boxes are kept per window: memory does not grow with the image
            merger.add(start, detections)
        return merger.finalize()


@dataclass(frozen=True)
class WindowDetections:
    """Every window pass's detections of one image before fusion (to fuse them again with other parameters,
    as the inference-parameter sweep does).

    Attributes:
        image_shape: Spatial shape of the padded image the windows tile.
        crop: Where the unpadded image lies in it.
        patch_size: Window size.
        windows: Per window, mirrored pass and detector: the window's start and its detections (window
            coordinates, flipped back).
    """

    image_shape: tuple[int, ...]
    crop: tuple[slice, ...]
    patch_size: tuple[int, ...]
    windows: tuple[tuple[tuple[int, ...], Detections], ...]

    def fuse(self, fusion: BoxFusionSettings, select: PostprocessSettings | None = None) -> Detections:
        """The image's fused detections, each window's detections first reduced by
        :func:`~autounet.detection.retina_unet.select_detections` with ``select`` when given."""
        merger = BoxMerger(self.image_shape, self.crop, self.patch_size, fusion)
        for start, found in self.windows:
            merger.add(start, found if select is None else select_detections(found, self.patch_size, select))
        return merger.finalize()


def collect_window_detections(detectors: Sequence[Detector], image: torch.Tensor, settings: SlidingWindowSettings,
                              device: torch.device | None = None) -> WindowDetections:
    """The detections of every window, mirrored pass and detector of a preprocessed image, unfused, on the CPU
    (arguments as :func:`predict_boxes_sliding_window`)."""
    with torch.inference_mode():
        padded, crop, passes = _window_passes(detectors, image, settings, device)
        windows = tuple((start, found.to("cpu")) for start, found in passes)
    return WindowDetections(padded, crop, tuple(int(p) for p in settings.patch_size), windows)


def _window_passes(detectors: Sequence[Detector], image: torch.Tensor, settings: SlidingWindowSettings,
                   device: torch.device | None
                   ) -> tuple[tuple[int, ...], tuple[slice, ...], Iterator[tuple[tuple[int, ...], Detections]]]:
    """The padded shape, the crop back to the image, and a generator of ``(window start, detections)`` for every
    window batch x detector x mirror flip (detections flipped back into window coordinates)."""
    if not detectors:
        raise ValueError("no detector to predict with")
    patch = tuple(int(p) for p in settings.patch_size)
    if image.ndim - 1 != len(patch):
        raise ValueError(f"image of shape {tuple(image.shape)} does not fit the {len(patch)}D patch {patch}: "
                         "boxes are predicted on patches with the image's axes")
    device = image.device if device is None else torch.device(device)
    padded, crop = pad_to_patch(image.to(device), patch)
    flips = mirror_dim_combinations(settings.mirror_axes)

    def passes() -> Iterator[tuple[tuple[int, ...], Detections]]:
        for batch in iter_window_batches(tuple(padded.shape[1:]), settings):
            patches = torch.stack([padded[(slice(None), *window)] for window in batch])
            starts = [tuple(int(w.start) for w in window) for window in batch]  # type: ignore[union-attr]
            for detector in detectors:
                for dims in flips:
                    found = detector(torch.flip(patches, dims) if dims else patches)
                    spatial_axes = [d - 2 for d in dims]
                    for start, detections in zip(starts, found, strict=True):
                        if dims and len(detections):
                            detections = Detections(flip_boxes(detections.boxes, patch, spatial_axes),
                                                    detections.scores, detections.classes)
                        yield start, detections

    return tuple(int(n) for n in padded.shape[1:]), tuple(crop), passes()


def boxes_to_original(detections: Detections, properties: CaseProperties,
                      axis_order: Sequence[int]) -> list[OriginalBox]:
    """Map detections of the preprocessed image (plan axis order, cropped, resampled) to the input image.

    Edges scale with the resampling (``shape_after_crop / shape_after_resampling`` per axis), move by the crop
    box's start, and return to the input's axis order; world coordinates come from its geometry.
    """
    ndim = len(properties.shape_after_resampling)
    boxes = detections.boxes.detach().cpu().double().numpy()
    scale = np.asarray(properties.shape_after_crop, dtype=np.float64) / np.asarray(
        properties.shape_after_resampling, dtype=np.float64)
    start = np.asarray([low for low, _ in properties.bbox_used_for_cropping], dtype=np.float64)
    lower = boxes[:, :ndim] * scale + start
    upper = boxes[:, ndim:] * scale + start
    inverse = np.argsort(np.asarray(axis_order))
    return boxes_in_world(np.concatenate([lower[:, inverse], upper[:, inverse]], axis=1),
                          detections.scores.detach().cpu().numpy(), detections.classes.detach().cpu().numpy(),
                          properties.original_geometry)


@dataclass(frozen=True)
class DetectionModel:
    """A trained detection configuration, loaded: what :class:`BoxPredictor` needs.

    Attributes:
        plans: The dataset's plans.
        configuration: The detection configuration (``configuration.detection`` set).
        description: The dataset's ``dataset.json`` (channels, class names, file ending).
        detectors: One per fold, mapping patches to detections (the networks' ``detect``).
        mirror_axes: Patch axes the networks were trained mirror-invariant on.
        origin: What it was loaded from (recorded in every box file).
        inference: The inference parameters the detectors decode with and the fusion uses.
        inference_source: Where they came from: a fold's swept ``detection_inference.json``, or the plan.
    """

    plans: Plans
    configuration: ConfigurationPlan
    description: DatasetDescription
    detectors: tuple[Detector, ...]
    mirror_axes: tuple[int, ...] = ()
    origin: str = ""
    inference: DetectionInference = field(default_factory=DetectionInference)
    inference_source: str = "plan"


def is_detection_model_folder(model_folder: Path) -> bool:
    """Whether a run folder holds a trained detection configuration (its plans name one and the folder's
    configuration, from its name ``<configuration>__<recipe>__<plans>``, is it)."""
    plans_file = Path(model_folder) / "plans.json"
    if not plans_file.is_file() or is_nnunet_model_folder(Path(model_folder)):  # nnU-Net plans: never detection
        return False
    try:
        plans = load_plans(plans_file)
    except AutounetError:
        return False
    name = configuration_of_run_folder(Path(model_folder).name)
    return name in plans.configurations and plans.configurations[name].detection is not None


def load_detection_model(model_folder: Path, folds: Sequence[int | str], checkpoint: str = "checkpoint_final.pt",
                         device: str | torch.device = "cpu", overrides: Mapping[str, float] | None = None
                         ) -> DetectionModel:
    """Load a detection run folder: plans, ``dataset.json``, one Retina U-Net per fold, and the inference
    parameters: the first fold's swept ``detection_inference.json`` where one exists, else the plan's, with
    ``overrides`` (field name -> value of :class:`~autounet.planning.plans.DetectionInference`) on top.

    Raises:
        CheckpointError: Missing files or folds, or weights that do not fit the plan.
        ConfigError: An unreadable ``detection_inference.json``, or an override outside its range.
    """
    model_folder = Path(model_folder)
    plans = load_plans(model_folder / "plans.json")
    description = load_dataset_json(model_folder / "dataset.json")
    configuration = plans.configuration(configuration_of_run_folder(model_folder.name))
    if not folds:
        raise CheckpointError("no fold given", model_folder)
    inference, source = _inference_parameters(model_folder, configuration, folds, overrides or {})
    detectors, mirror_axes = [], ()
    for fold in folds:
        path = model_folder / f"fold_{fold}" / checkpoint
        state = load_checkpoint(path, map_location="cpu")
        # The checks a segmentation model's checkpoint gets: finite tensors that fit the network, valid axes.
        weights = check_weights(state, "network", path)
        network = build_planned_detector(configuration, description.num_channels, inference)
        check_matches(weights, network.state_dict(), path)
        network.load_state_dict(weights, strict=True)
        detectors.append(network.to(device).eval().detect)
        metadata = state.get("metadata")
        mirror_axes = check_axes(metadata.get("mirror_axes") if isinstance(metadata, dict) else None,
                                 configuration.ndim, "metadata.mirror_axes", path)
    origin = f"{model_folder} folds {','.join(map(str, folds))} ({checkpoint})"
    return DetectionModel(plans, configuration, description, tuple(detectors), mirror_axes, origin, inference,
                          source)


def _inference_parameters(model_folder: Path, configuration: ConfigurationPlan, folds: Sequence[int | str],
                          overrides: Mapping[str, float]) -> tuple[DetectionInference, str]:
    detection = configuration.detection
    assert detection is not None  # only detection configurations are loaded as detection models
    swept = swept_inference_of_folds(model_folder, folds)
    inference, source = swept if swept is not None else (detection.inference, "plan")
    if overrides:
        unknown = sorted(set(overrides) - set(DetectionInference.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"unknown detection inference parameter '{unknown[0]}'")
        inference = replace(inference, **overrides)
        source += " with " + ", ".join(f"{name}={value}" for name, value in sorted(overrides.items()))
        try:
            check_inference_parameters(inference)
        except ValueError as error:
            raise ConfigError(str(error)) from None
    return inference, source


class BoxPredictor:
    """Predicts the boxes of images with a :class:`DetectionModel`: preprocessing as in training, sliding
    windows with mirroring and fold ensembling fused by weighted box clustering, boxes in the input's grid.

    Args:
        model: The loaded detection model.
        device: Where the networks run.
        step_size: Window step as a fraction of the patch.
        use_mirroring: Test-time mirroring along the trained mirror axes.
        show_progress: Progress bar over the cases of a folder.
    """

    def __init__(self, model: DetectionModel, device: str | torch.device = "cpu", step_size: float = 0.5,
                 use_mirroring: bool = True, show_progress: bool = True) -> None:
        self.model = model
        self.device = torch.device(device)
        self.window_settings = SlidingWindowSettings(
            patch_size=tuple(model.configuration.patch_size), step_size=step_size,
            mirror_axes=model.mirror_axes if use_mirroring else ())
        self.fusion = fusion_settings(model.inference)
        self.show_progress = show_progress

    def predict_array(self, image: np.ndarray, geometry: ImageGeometry) -> list[OriginalBox]:
        """Boxes of one image ``(C, *spatial)`` (raw axis order) in its own voxel grid and world."""
        data, _, properties = preprocess_case(image, None, geometry, self.model.plans, self.model.configuration)
        detections = predict_boxes_sliding_window(self.model.detectors, torch.from_numpy(data),
                                                  self.window_settings, self.fusion, self.device)
        return boxes_to_original(detections, properties, self.model.plans.axis_order)

    def predict_folder(self, input_dir: Path, output_dir: Path, overwrite: bool = False,
                       box_map_min_score: float | None = None) -> list[Path]:
        """Write ``<case>_boxes.json`` for every ``<case>_NNNN<ending>`` case of a folder (finished cases are
        skipped unless ``overwrite``).

        With ``box_map_min_score``, also ``<case>_boxes<ending>``: the boxes scoring at least that as a label
        map in the input's geometry (:func:`~autounet.detection.box_files.paint_boxes`), written before the
        box file, so a case with its box file is complete.

        Raises:
            DatasetError: No case found, or a case whose channel files do not fit the model.
            ConfigError: The output folder is the input folder.
        """
        check_output_apart_from_input(Path(input_dir), Path(output_dir))
        description = self.model.description
        groups, strays = group_channel_files(Path(input_dir), description.file_ending)
        if not groups:
            raise no_case_error(Path(input_dir), description.file_ending)
        for stray in strays:
            logger.warning("ignored (not <case>_NNNN%s): %s", description.file_ending, stray)
        outputs = {case: Path(output_dir) / box_file_name(case) for case in sorted(groups)}
        maps = {case: Path(output_dir) / box_map_name(case, description.file_ending) for case in outputs}
        todo = [case for case in outputs if overwrite or not outputs[case].exists()
                or (box_map_min_score is not None and not maps[case].exists())]
        names = description.instance_classes
        cases = progress(todo, "Detecting", total=len(todo)) if self.show_progress else todo
        for case in cases:
            files = case_channel_files(groups[case], description.file_ending, description.num_channels)
            image, geometry = read_image(files)
            if image.shape[0] != description.num_channels:
                raise DatasetError(f"the case has {image.shape[0]} channel(s) but the model expects "
                                   f"{description.num_channels}", files[0])
            boxes = self.predict_array(image, geometry)
            if box_map_min_score is not None:
                write_segmentation(paint_boxes(boxes, image.shape[1:], box_map_min_score), geometry, maps[case])
            write_boxes_json(outputs[case], boxes, names, source=self.model.origin)
        return list(outputs.values())
