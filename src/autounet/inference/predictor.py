"""Prediction with a trained model folder: load once, then segment arrays, files or whole folders.

The model comes from :func:`autounet.inference.model_folder.load_model_folder` (an autounet, exported,
installed or nnU-Net v2 model folder) as a :class:`~autounet.inference.loaded_model.LoadedModel`, whose
networks are plain patch callables. Several folds form an ensemble whose logits are averaged before the
nonlinearity, as nnU-Net does. A cascade stage (``3d_cascade_fullres``) brings the model of its previous
stage, whose prediction becomes extra one-hot input channels.

A model trained on several label maps (tasks) predicts all of them in one pass; each task's map is written
to ``<output>/<task>/<case><ending>`` (the layout of ``labelsTr``), line tasks as one-voxel lines thinned from
their own output or taken from a predicted area map (``line_source``), each task with its own postprocessing
(:mod:`autounet.inference._task_maps`).

Folders are predicted as a pipeline (:mod:`autounet.inference._pipeline`): the next case is read and
preprocessed in a background thread while the network runs, and the way back to the original geometry
(resampling, un-cropping, postprocessing, writing) runs in another, each at most one case ahead or behind to
bound memory.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from autounet.dataset.labels import OutputLayout
from autounet.dataset.raw import case_channel_files, group_channel_files, no_case_error
from autounet.errors import CheckpointError, ConfigError, DatasetError, ImageIOError
from autounet.inference._output_folder import check_output_apart_from_input, prepare_output_folder
from autounet.inference._pipeline import run_pipelined
from autounet.inference._task_maps import LINE_SOURCES, TaskOutputs
from autounet.inference.cascade import previous_stage_one_hot, segmentation_for_next_stage
from autounet.inference.cpu_compile import compile_when_it_pays
from autounet.inference.loaded_model import LoadedModel
from autounet.inference.model_folder import load_model_folder
from autounet.inference.original_geometry import save_probabilities, to_original_geometry
from autounet.inference.sliding_window import SlidingWindowSettings, predict_sliding_window
from autounet.io.geometry import ImageGeometry, describe_dimensionality, spatial_dimensionality
from autounet.io.images import read_image, split_ending, write_segmentation
from autounet.io.serialization import to_dict
from autounet.postprocessing import PostprocessingPlan, TaskPostprocessing, apply_postprocessing
from autounet.preprocessing.case import preprocess_case
from autounet.preprocessing.properties import CaseProperties
from autounet.progress import progress

__all__ = ["LINE_SOURCES", "PredictionSettings", "Predictor", "task_output_file"]

logger = logging.getLogger(__name__)

def task_output_file(output_dir: Path, task: str, file_name: str) -> Path:
    """Where a multi-task prediction puts task ``task``'s map of a case: ``<output_dir>/<task>/<file_name>``."""
    return Path(output_dir) / task / file_name


@dataclass(frozen=True)
class PredictionSettings:
    """How a :class:`Predictor` runs the sliding window and what it writes.

    Attributes:
        step_size: Distance between window starts as a fraction of the patch size, in ``(0, 1]``.
        use_mirroring: Average over mirrored inputs (test-time augmentation) along the axes the model was
            trained to be mirror-invariant on (checkpoint metadata ``mirror_axes``).
        use_gaussian: Weight window logits with a Gaussian (else a plain average).
        save_probabilities: Also write ``<case>.npz`` holding ``probabilities`` ``(K, *spatial)`` float32 in
            the raw axis order of the input.
        batch_size: Windows per network call.
        show_progress: Show a progress bar over the cases of :meth:`Predictor.predict_folder`, and a transient
            one over the windows of large cases.
        postprocessing: Applied to every label map before it is returned or written (never to the
            probabilities); ``None``: none. The CLI loads the model folder's ``postprocessing.json`` here. A
            model of several label maps takes a :class:`~autounet.postprocessing.TaskPostprocessing` (a plan
            per task), a model of one a :class:`~autounet.postprocessing.PostprocessingPlan`.
        overwrite: :meth:`Predictor.predict_folder` predicts every case again, replacing earlier outputs,
            also those of another model (without it, finished cases are skipped and a folder predicted by
            another model is refused).
        compile: Channels-last weights and ``torch.compile`` for torch networks on the CPU, after a warm-up
            of eager windows (:mod:`autounet.inference.cpu_compile`); ``None``: where it was measured to be
            faster (3D networks on AVX-512 CPUs).
        line_source: Where the maps of line tasks come from: ``"head"``, their own output thinned to a
            one-voxel line; ``"boundary"``, the line ``dataset.json`` declares for them (``"boundary"``)
            between labels of the predicted area map (the calving front as the glacier/ocean border).
    """

    step_size: float = 0.5
    use_mirroring: bool = True
    use_gaussian: bool = True
    save_probabilities: bool = False
    batch_size: int = 1
    show_progress: bool = True
    postprocessing: PostprocessingPlan | TaskPostprocessing | None = None
    overwrite: bool = False
    compile: bool | None = None
    line_source: str = "head"


@dataclass(frozen=True)
class _PreparedCase:
    """A case read and preprocessed, waiting for the network.

    Attributes:
        data: Preprocessed image ``(C, *spatial)`` float32 for this configuration.
        properties: Its preprocessing record.
        previous_data: For a cascade, the same image preprocessed for the previous stage; else ``None``.
        output_file: Where the label map goes (folder prediction only).
    """

    data: np.ndarray
    properties: CaseProperties
    previous_data: np.ndarray | None = None
    output_file: Path | None = None


class Predictor:
    """Segments images with the networks of one or more folds of a trained configuration.

    Build it with :meth:`from_model_folder`; networks are built and loaded once and reused for every case.

    Args:
        model: Plans, dataset description and loaded networks.
        device: Where the networks run (they must already be there).
        settings: Sliding-window and output options; defaults when ``None``.
    """

    def __init__(self, model: LoadedModel, device: str | torch.device = "cpu",
                 settings: PredictionSettings | None = None) -> None:
        if not model.networks:
            raise CheckpointError("no network to predict with: give at least one fold")
        if model.configuration.previous_stage is not None and model.previous_stage is None:
            raise ConfigError(f"configuration '{model.configuration.name}' is a cascade stage: load the model of "
                              f"its previous stage '{model.configuration.previous_stage}' too (from_model_folder "
                              "does)")
        self.model = model
        self.settings = settings or PredictionSettings()
        self.layout = OutputLayout.from_description(model.trained_description)
        post = self.settings.postprocessing
        self.outputs = TaskOutputs(model.description, model.configuration.label_derivation, self.layout,
                                   self.settings.line_source)
        if self.multitask and (model.previous_stage is not None or isinstance(post, PostprocessingPlan)):
            raise ConfigError("a model of several label maps predicts without cascade stages, and its "
                              "postprocessing names each task ({\"tasks\": {...}}); a single plan is refused")
        if not self.multitask and isinstance(post, TaskPostprocessing):
            raise ConfigError("a per-task postprocessing ({\"tasks\": {...}}) fits a model of several label maps; "
                              "this model predicts one")
        if isinstance(post, TaskPostprocessing):
            self.outputs = replace(self.outputs, postprocessing=post)
        self.device = torch.device(device)
        mirror = model.mirror_axes if self.settings.use_mirroring else ()
        self.window_settings = SlidingWindowSettings(
            patch_size=tuple(model.configuration.patch_size), step_size=self.settings.step_size,
            use_gaussian=self.settings.use_gaussian, mirror_axes=tuple(mirror),
            batch_size=self.settings.batch_size, show_progress=self.settings.show_progress)
        self.networks = compile_when_it_pays(model.networks, model.configuration.ndim, self.device,
                                             self.settings.compile)
        self.previous: Predictor | None = None
        if model.previous_stage is not None:
            self.previous = Predictor(model.previous_stage, self.device, self.settings)

    @classmethod
    def from_model_folder(cls, model_folder: Path, folds: Sequence[int | str] = (0,),
                          checkpoint: str = "checkpoint_final.pt", device: str = "cpu",
                          settings: PredictionSettings | None = None) -> Predictor:
        """Load ``plans.json``, ``dataset.json`` and one checkpoint per fold from a model folder
        (:func:`~autounet.inference.model_folder.load_model_folder`).

        Args:
            model_folder: ``results/<Dataset>/<configuration>`` (or ``<configuration>__<recipe>__<plans>``), an
                exported or installed model, or an nnU-Net v2 model folder.
            folds: Fold indices or ``"all"``; ``fold_<f>/<checkpoint>`` is loaded for each. Repeating a fold
                loads it twice (an ensemble of identical members).
            checkpoint: Checkpoint file name inside each fold folder.
            device: ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
            settings: Prediction options; defaults when ``None``.

        Raises:
            CheckpointError: Missing folder, plans, checkpoint, or weights that do not fit the plans; for a
                cascade stage, a missing previous-stage folder (the sibling run folder) or fold.
            ConfigError: Folds trained with different configurations.
        """
        return cls(load_model_folder(Path(model_folder), folds, checkpoint, device), torch.device(device), settings)

    @property
    def origin(self) -> str:
        """What the model was loaded from (:attr:`LoadedModel.origin`); for a model assembled in code, a
        digest of its plans, labels, configuration and number of networks."""
        if self.model.origin:
            return self.model.origin
        text = json.dumps([to_dict(self.model.plans), self.model.description.to_json_dict(),
                           self.model.configuration.name, len(self.model.networks)], sort_keys=True, default=str)
        return f"model in memory ({hashlib.sha256(text.encode()).hexdigest()[:12]})"

    @property
    def multitask(self) -> bool:
        """Whether the model predicts several label maps (tasks)."""
        return len(self.outputs.tasks) > 1

    @property
    def region_class_order(self) -> tuple[int, ...] | None:
        """For region-based models, the label painted for each output channel; else ``None``."""
        return self.layout.single.regions_class_order

    def predict_logits(self, data: torch.Tensor) -> torch.Tensor:
        """Sliding-window logits of a preprocessed case, averaged over the folds.

        Args:
            data: Preprocessed image ``(C, *spatial)`` float32, plan axis order and spacing; for a cascade
                stage, the image channels followed by the previous stage's one-hot channels.

        Returns:
            Logits ``(num_outputs, *spatial)`` float32 on the CPU.
        """
        total: torch.Tensor | None = None
        for network in self.networks:
            logits = predict_sliding_window(network, data, self.model.num_outputs, self.window_settings, self.device)
            total = logits if total is None else total.add_(logits)
        assert total is not None  # the constructor rejects an empty ensemble
        # Averaging logits (not probabilities) across folds follows nnU-Net's predictor.
        return total.div_(len(self.model.networks)) if len(self.model.networks) > 1 else total

    def predict_array(self, image: np.ndarray, geometry: ImageGeometry) -> tuple[np.ndarray, np.ndarray | None]:
        """Segment one image given as an array.

        Args:
            image: Raw intensities ``(C, *spatial)``, raw axis order ``(C, Z, Y, X)`` or ``(C, Y, X)`` as
                :func:`autounet.io.read_image` returns them.
            geometry: The image's geometry (spacing picks the resampling).

        Returns:
            The label map ``(*spatial)`` (integer, same shape and axis order as ``image`` without ``C``,
            postprocessed when the settings say so) and, with ``save_probabilities``, float32 probabilities
            ``(K, *spatial)``, else ``None``.

        Raises:
            DatasetError: The channel count differs from the model's.
            ConfigError: The model predicts several label maps (use :meth:`predict_array_tasks`).
        """
        if self.multitask:
            raise ConfigError("the model predicts several label maps; use predict_array_tasks")
        return self._in_original_geometry(*self._array_logits(image, geometry))

    def predict_array_tasks(self, image: np.ndarray, geometry: ImageGeometry) -> dict[str, np.ndarray]:
        """Every label map of one image given as an array (see :meth:`predict_array`), by task name; line
        tasks as one-voxel lines (``settings.line_source``). A one-task model gives its one map under its task
        name."""
        logits, properties = self._array_logits(image, geometry)
        return {name: seg for name, seg, _ in self._task_maps(logits, properties)}

    def _array_logits(self, image: np.ndarray, geometry: ImageGeometry) -> tuple[torch.Tensor, CaseProperties]:
        expected = self.model.description.num_channels
        if image.ndim != geometry.ndim + 1 or image.shape[0] != expected:
            raise DatasetError(f"image of shape {tuple(image.shape)} is not (C, *spatial) with the model's "
                               f"{expected} channel(s)")
        self._check_dimensionality(tuple(image.shape[1:]), None)
        prepared = self._preprocess(image, geometry)
        return self._case_logits(prepared), prepared.properties

    def predict_files(self, files: Sequence[Path], output_file: Path) -> None:
        """Segment one case from its channel files and write the label map with the input's geometry.

        Args:
            files: One file per channel, in channel order (``case_0000``, ``case_0001``, ...).
            output_file: Destination label map; its ending picks the format. With ``save_probabilities``,
                ``<stem>.npz`` is written beside it first, so an existing label map marks a finished case. A
                model of several label maps writes each to ``<output_file's folder>/<task>/<name>`` instead.

        Raises:
            ImageIOError: Unreadable input, a channel count the model does not expect (naming the file), or
                an unsupported output ending.
        """
        prepared = self._prepare_files(files, Path(output_file))
        self._finish(prepared, self._case_logits(prepared))

    def predict_folder(self, input_dir: Path, output_dir: Path) -> list[Path]:
        """Segment every ``{case}_{NNNN}{ending}`` case of a folder; cases with an output are skipped (unless
        ``settings.overwrite``).

        Reading + preprocessing of the next case and the restoring of the previous one to its original
        geometry overlap with the network (see the module docstring). The model's ``dataset.json`` (recording
        which model predicted the folder) and ``plans.json`` are written into ``output_dir`` too (ensembling
        reads the labels from them), never over such files that autounet did not write; no other file there
        is touched.

        Args:
            input_dir: Folder of channel files named as in ``imagesTs`` (``ending`` from ``dataset.json``).
            output_dir: Receives ``{case}{ending}`` (and ``{case}.npz`` with ``save_probabilities``).

        Returns:
            The output file of every case, predicted now or earlier, sorted by case id (for a model of
            several label maps, the last task's file of each case).

        Raises:
            DatasetError: No case found, or a case whose channel files are not ``0000`` .. the model's count
                (fewer for natural images, one file holding several channels; see
                :func:`autounet.dataset.raw.case_channel_files`).
            ConfigError: The output folder is the input folder, or holds a ``dataset.json``/``plans.json``
                autounet did not write, or predictions of another model (without ``settings.overwrite``).
            AutounetError: The first error of any case (unreadable input, failed write), naming its file.
        """
        input_dir, output_dir = Path(input_dir), Path(output_dir)
        check_output_apart_from_input(input_dir, output_dir)
        ending = self.model.description.file_ending
        groups, strays = group_channel_files(input_dir, ending)
        if not groups:
            raise no_case_error(input_dir, ending)
        for stray in strays:
            logger.warning("ignored (not <case>_NNNN%s): %s", ending, stray)
        expected = self.model.description.num_channels
        cases = {case: case_channel_files(channels, ending, expected) for case, channels in sorted(groups.items())}
        outputs = {case: output_dir / f"{case}{ending}" for case in cases}
        # A multi-task case is finished when its last task's map exists (the maps are written in task order).
        last = self.outputs.tasks[-1].name
        finished = {case: task_output_file(output_dir, last, file.name) if self.multitask else file
                    for case, file in outputs.items()}
        prepare_output_folder(output_dir, self.model.description, self.model.plans, self.origin,
                              self.settings.overwrite)
        todo = [case for case in cases if self.settings.overwrite or not finished[case].exists()]
        if len(todo) < len(cases):
            logger.info("skipping %d case(s) already predicted in %s", len(cases) - len(todo), output_dir)

        def wrap(items: Iterable[str]) -> Iterable[str]:
            return progress(items, "Predicting", total=len(todo)) if self.settings.show_progress else items

        run_pipelined(todo, lambda case: self._prepare_files(cases[case], outputs[case]), self._compute,
                      lambda done: self._finish(*done), wrap=wrap)
        return list(finished.values())

    def _prepare_files(self, files: Sequence[Path], output_file: Path) -> _PreparedCase:
        """Read and preprocess one case (runs in the pipeline's reader thread)."""
        if split_ending(output_file.name) is None:
            raise ImageIOError("unsupported output file ending", output_file)
        image, geometry = read_image(files)
        expected = self.model.description.num_channels
        if image.shape[0] != expected:
            raise ImageIOError(f"the case has {image.shape[0]} channel(s) but the model expects {expected} "
                               "(dataset.json channel_names)", Path(files[0]))
        self._check_dimensionality(tuple(image.shape[1:]), Path(files[0]))
        return replace(self._preprocess(image, geometry), output_file=output_file)

    def _check_dimensionality(self, shape: tuple[int, ...], source: Path | None) -> None:
        """Refuse an image that is 2D where the model was trained on 3D images, or the reverse.

        The dataset the model learnt from decides (its median shape in the plans), not the configuration: a
        ``2d`` configuration of a 3D dataset predicts 3D images slice by slice, as it was validated.

        Raises:
            ImageIOError: The dimensionality (or, for 2D, the number of stored axes) differs from the
                training images', naming the image file and both dimensionalities.
        """
        median = self.model.plans.original_median_shape
        # Foreign plans may lack the median shape; then only the number of stored axes is known.
        trained_axes = len(median) if median else len(self.model.plans.axis_order)
        same_dims = not median or spatial_dimensionality(shape) == spatial_dimensionality(median)
        if len(shape) == trained_axes and same_dims:
            return
        found = describe_dimensionality(shape)
        trained = describe_dimensionality(median) if median else f"{trained_axes}-axis"
        hint = (f"the model's plans expect {trained_axes} array axes, so store it as its training images were stored"
                if median and spatial_dimensionality(shape) == spatial_dimensionality(median)
                else f"predict it with a model trained on {found.split()[0]} images")
        raise ImageIOError(f"the image is {found} (shape {shape}) but the model was trained on {trained} images; "
                           f"{hint}", source)

    def _preprocess(self, image: np.ndarray, geometry: ImageGeometry) -> _PreparedCase:
        """Preprocess an image for this configuration (and, for a cascade, for the previous stage)."""
        data, _, properties = preprocess_case(image, None, geometry, self.model.plans, self.model.configuration)
        previous_data = None
        if self.previous is not None:
            previous_data, _, _ = preprocess_case(image, None, geometry, self.model.plans,
                                                  self.previous.model.configuration)
        return _PreparedCase(data=data, properties=properties, previous_data=previous_data)

    def _case_logits(self, prepared: _PreparedCase) -> torch.Tensor:
        """Logits of a prepared case; a cascade stage first predicts its previous stage (recursively)."""
        inputs = torch.from_numpy(prepared.data)
        if self.previous is not None:
            assert prepared.previous_data is not None  # _preprocess prepares it for a cascade
            previous = self.previous._case_logits(_PreparedCase(prepared.previous_data, prepared.properties))
            # The previous stage's labels, moved to this stage's preprocessed grid (same crop, other spacing).
            seg = segmentation_for_next_stage(previous, prepared.data.shape[1:], self.previous.model.configuration,
                                              self.previous.region_class_order)
            del previous
            one_hot = previous_stage_one_hot(torch.from_numpy(seg), self.model.description.foreground_labels)
            inputs = torch.cat([inputs, one_hot])
        return self.predict_logits(inputs)

    def _compute(self, prepared: _PreparedCase) -> tuple[_PreparedCase, torch.Tensor]:
        """Pipeline middle stage: the network; the preprocessed arrays are dropped, only properties stay."""
        logits = self._case_logits(prepared)
        return replace(prepared, data=np.empty(0, np.float32), previous_data=None), logits

    def _in_original_geometry(self, logits: torch.Tensor,
                              properties: CaseProperties) -> tuple[np.ndarray, np.ndarray | None]:
        """Label map (postprocessed) and optional probabilities in the original grid."""
        seg, probabilities = to_original_geometry(logits, properties, self.model.plans, self.model.configuration,
                                               self.region_class_order,
                                               return_probabilities=self.settings.save_probabilities)
        if isinstance(self.settings.postprocessing, PostprocessingPlan):
            seg = apply_postprocessing(seg, self.settings.postprocessing)
        return seg, probabilities

    def _task_maps(self, logits: torch.Tensor, properties: CaseProperties
                   ) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
        """Each written task's label map and optional probabilities in the original grid."""
        return self.outputs.maps(logits, properties, self.model.plans, self.model.configuration,
                                 self.settings.save_probabilities)

    def _finish(self, prepared: _PreparedCase, logits: torch.Tensor) -> None:
        """Pipeline last stage: export and write one case (probabilities first, the label map last)."""
        assert prepared.output_file is not None  # set by _prepare_files
        if self.multitask:
            self._finish_tasks(prepared, logits)
            return
        output_file = prepared.output_file
        seg, probabilities = self._in_original_geometry(logits, prepared.properties)
        del logits
        if probabilities is not None:
            stem = split_ending(output_file.name)
            assert stem is not None  # checked by _prepare_files
            save_probabilities(output_file.with_name(f"{stem[0]}.npz"), probabilities)
            del probabilities
        write_segmentation(seg, prepared.properties.original_geometry, output_file)

    def _finish_tasks(self, prepared: _PreparedCase, logits: torch.Tensor) -> None:
        """Write every task's map of a case into ``<task>/``, in task order (the last one marks the case)."""
        assert prepared.output_file is not None
        output_dir, name = prepared.output_file.parent, prepared.output_file.name
        stem = split_ending(name)
        assert stem is not None  # checked by _prepare_files
        for task, seg, probabilities in self._task_maps(logits, prepared.properties):
            target = task_output_file(output_dir, task, name)
            if probabilities is not None:
                save_probabilities(target.with_name(f"{stem[0]}.npz"), probabilities)
            write_segmentation(seg, prepared.properties.original_geometry, target)
