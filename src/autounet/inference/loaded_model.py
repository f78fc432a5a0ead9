"""The one type a loaded model folder becomes: plans, dataset description and one patch model per fold."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from autounet.dataset.derived import derive_description
from autounet.dataset.description import DatasetDescription
from autounet.dataset.labels import OutputLayout
from autounet.errors import CheckpointError, DatasetError
from autounet.inference.sliding_window import PatchModel
from autounet.planning.plans import ConfigurationPlan, Plans

__all__ = ["LoadedModel", "check_output_count"]


@dataclass(frozen=True)
class LoadedModel:
    """Everything a :class:`~autounet.inference.predictor.Predictor` needs, loaded from a model folder.

    Attributes:
        plans: The dataset's plans (axis order, configurations).
        configuration: The configuration the networks were trained with.
        description: The dataset's ``dataset.json`` (channels, labels, file ending).
        networks: One patch model per fold, ready on the prediction device: any callable mapping
            ``(B, C, *patch)`` to logits ``(B, num_outputs, *patch)`` (a torch module in eval mode, or a
            runtime session wrapped as one); nothing relies on them being torch modules.
        num_outputs: Output channels (classes incl. background, or regions).
        mirror_axes: Patch axes the models were trained with mirroring on.
        previous_stage: For a cascade stage, the loaded model of its previous stage (same folds), whose
            networks take the image channels plus one one-hot channel per foreground label; else ``None``.
        origin: What the model was loaded from: the model folder, folds, checkpoint and a digest of its
            plans, ``dataset.json`` and checkpoints (a prediction folder records it, to notice a change of
            model); empty for a model assembled in code.
    """

    plans: Plans
    configuration: ConfigurationPlan
    description: DatasetDescription
    networks: tuple[PatchModel, ...]
    num_outputs: int
    mirror_axes: tuple[int, ...] = ()
    previous_stage: LoadedModel | None = None
    origin: str = ""

    @property
    def trained_description(self) -> DatasetDescription:
        """The label maps the networks predict: :attr:`description`'s, or those the configuration's label
        derivation computes from them (:func:`~autounet.dataset.derived.derive_description`)."""
        return derive_description(self.description, self.configuration.label_derivation)


def check_output_count(description: DatasetDescription, num_outputs: int, folder: Path) -> None:
    """Reject weights whose output count disagrees with the labels of ``dataset.json`` (its
    :class:`~autounet.dataset.labels.OutputLayout`).

    Raises:
        CheckpointError: The counts differ, or the labels describe no output at all.
    """
    try:
        expected = OutputLayout.from_description(description).num_outputs
    except (DatasetError, ValueError) as exc:
        raise CheckpointError(f"dataset.json's labels describe no network output: {exc}", folder) from None
    if expected != num_outputs:
        raise CheckpointError(f"the network has {num_outputs} outputs but dataset.json's labels need {expected}",
                              folder)
