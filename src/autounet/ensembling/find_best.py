"""Choose the best trained configuration, or pairwise ensemble, from cross-validation results.

Every configuration folder under ``results/<Dataset>`` whose requested folds all finished their final
validation (``fold_N/validation/summary.json``) is a candidate. Its score is the mean foreground Dice (mean
over labels/regions of the mean over cases) of its validation label maps against the raw ``labelsTr``.
Each pair of candidates with ``<case>.npz`` probabilities for every case is ensembled (mean probabilities)
and scored too. The winner's postprocessing is decided on its cross-validation predictions.

A dataset with several label maps (tasks) is compared on its area tasks (each configuration's
``validation/<task>/`` maps against ``labelsTr/<task>/``; the score is the mean over every area task's labels),
without ensembles, and the winner's postprocessing is decided per task
(:class:`~autounet.postprocessing.TaskPostprocessing`).

Written to ``results/<Dataset>/find_best/``: ``summary.json`` (every candidate), ``choice.json``
(:class:`FindBestChoice`), ``postprocessing.json``, ``ensembles/<a>+<b>/`` (ensembled cross-validation
predictions) and ``predict_commands.txt``.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath
from typing import ClassVar

from autounet.dataset.description import DatasetDescription, load_dataset_json
from autounet.dataset.labels import LabelScheme
from autounet.ensembling.average import EnsembleCase, ensemble_case
from autounet.errors import ConfigError, DatasetError
from autounet.io.jsonio import atomic_write, nan_to_none, write_json
from autounet.io.serialization import load_dataclass, save_dataclass
from autounet.postprocessing import (
    POSTPROCESSING_FILE,
    CasePair,
    PostprocessingPlan,
    TaskPostprocessing,
    determine_postprocessing,
    determine_task_postprocessing,
    mean_dice,
    save_postprocessing,
    save_task_postprocessing,
    scored_labels,
)
from autounet.progress import progress

__all__ = ["CHOICE_FILE", "FIND_BEST_FOLDER", "Candidate", "FindBestChoice", "FindBestResult", "chosen_postprocessing",
           "find_best"]

logger = logging.getLogger(__name__)

FIND_BEST_FOLDER = "find_best"
CHOICE_FILE = "choice.json"


@dataclass(frozen=True)
class FindBestChoice:
    """The chosen configuration(s), saved as ``find_best/choice.json``.

    Attributes:
        schema_version: Version of this file's layout.
        dataset: The dataset folder name.
        configurations: One configuration, or the two members of the chosen ensemble.
        folds: The folds whose models were compared (and that the predict commands use).
        ensemble: Whether the choice is an ensemble of ``configurations``.
        postprocessing_file: The chosen ``postprocessing.json``, relative to ``results/<Dataset>`` (``/``-separated,
            so the folder can move to another place or machine); resolve it with :meth:`postprocessing_path`.
            Files written by older versions hold an absolute path.
        cv_dice: Cross-validation mean foreground Dice without postprocessing.
        cv_dice_postprocessed: The same with the postprocessing applied.
    """

    SCHEMA_VERSION: ClassVar[int] = 1

    dataset: str
    configurations: tuple[str, ...]
    folds: tuple[int, ...]
    ensemble: bool
    postprocessing_file: str
    cv_dice: float | None
    cv_dice_postprocessed: float | None
    schema_version: int = 1

    def postprocessing_path(self, dataset_results: Path, use_absolute: bool = True) -> Path:
        """The chosen ``postprocessing.json`` as an absolute path, for the choice in ``dataset_results``.

        A relative path (what :func:`find_best` writes) lies below ``dataset_results``. An absolute one (older
        files) is used when it exists; else its part after the dataset folder's name is looked for below
        ``dataset_results``, which finds it again in a copied, exported or installed results folder.

        Args:
            dataset_results: ``results/<Dataset>``, the folder whose ``find_best/choice.json`` this is.
            use_absolute: Use an absolute path that exists as it is; ``False`` always looks below
                ``dataset_results`` (an archive being installed must bring the file itself).

        Raises:
            ConfigError: The path leaves ``dataset_results``, or the file is not found (naming choice.json).
        """
        dataset_results = Path(dataset_results)
        choice_file = dataset_results / FIND_BEST_FOLDER / CHOICE_FILE
        text = self.postprocessing_file
        # A path written on Windows has backslashes or a drive letter; read it as such on any OS.
        windows = "\\" in text or re.match(r"^[A-Za-z]:", text) is not None
        recorded: PurePath = PureWindowsPath(text) if windows else PurePosixPath(text)
        if not recorded.anchor:
            tail = recorded.parts
        elif use_absolute and Path(text).is_file():
            return Path(text)
        else:  # an absolute path of another place or machine
            parts = recorded.parts
            tail = parts[len(parts) - parts[::-1].index(self.dataset):] if self.dataset in parts else ()
        if not tail or ".." in tail:
            raise ConfigError(f"field 'postprocessing_file': '{text}' does not lie inside {dataset_results}; "
                              "rerun find-best", choice_file)
        path = dataset_results.joinpath(*tail)
        if not path.is_file():
            raise ConfigError(f"the chosen postprocessing file '{text}' is missing (looked for {path}); rerun "
                              "find-best, or predict with --no-postprocessing", choice_file)
        return path.absolute()


def chosen_postprocessing(model_folder: Path) -> Path | None:
    """The postprocessing find-best chose for a model folder, if it chose that folder's configuration alone.

    The choice is ``../find_best/choice.json`` beside the model folder (``results/<Dataset>/<configuration>``,
    trained here or exported and installed); an ensemble's postprocessing is not used for one of its members.

    Args:
        model_folder: The run folder predicted with.

    Returns:
        The absolute path of the chosen ``postprocessing.json``, or ``None``.

    Raises:
        ConfigError: ``choice.json`` is malformed or its postprocessing file is missing.
    """
    dataset_results = Path(model_folder).absolute().parent
    choice_file = dataset_results / FIND_BEST_FOLDER / CHOICE_FILE
    if not choice_file.is_file():
        return None
    choice = load_dataclass(FindBestChoice, choice_file)
    if choice.ensemble or choice.configurations != (Path(model_folder).absolute().name,):
        return None
    return choice.postprocessing_path(dataset_results)


@dataclass(frozen=True)
class Candidate:
    """A configuration or pairwise ensemble and its cross-validation scores.

    Attributes:
        name: The configuration, or ``"a+b"`` for an ensemble.
        configurations: Its member configurations.
        mean_dice: Label/region name -> mean Dice over cases (empty when skipped).
        skipped: Why it was not scored, or ``None``.
        pairs: (reference, prediction) files it was scored on.
    """

    name: str
    configurations: tuple[str, ...]
    mean_dice: dict[str, float]
    skipped: str | None = None
    pairs: tuple[CasePair, ...] = ()

    @property
    def foreground_dice(self) -> float:
        """Mean over labels of the mean Dice; NaN when skipped or undefined."""
        defined = [v for v in self.mean_dice.values() if not math.isnan(v)]
        return sum(defined) / len(defined) if defined else math.nan


@dataclass(frozen=True)
class FindBestResult:
    """What :func:`find_best` found and wrote.

    Attributes:
        candidates: Every configuration and ensemble, scored or skipped.
        choice: The winner.
        postprocessing: The winner's postprocessing plan (one per area task for a dataset of several label maps).
        commands: The predict (and ensemble) commands for new images.
        output_dir: The ``find_best`` folder.
    """

    candidates: tuple[Candidate, ...]
    choice: FindBestChoice
    postprocessing: PostprocessingPlan | TaskPostprocessing
    commands: tuple[str, ...]
    output_dir: Path


def _validation_files(config_dir: Path, folds: Sequence[int], ending: str, task: str = "") -> dict[str, Path] | str:
    """Case -> predicted label map over the folds (of ``validation/<task>/`` when a task is named), or why the
    configuration is no candidate."""
    files: dict[str, Path] = {}
    for fold in folds:
        validation = config_dir / f"fold_{fold}" / "validation"
        if not (validation / "summary.json").is_file():
            return f"fold {fold} has no finished validation ({validation / 'summary.json'} missing)"
        for path in sorted((validation / task).glob(f"*{ending}")):
            if not path.name.startswith("."):
                files[path.name[: -len(ending)]] = path
    return files


def _reference_pairs(files: dict[str, Path], labels_dir: Path) -> tuple[CasePair, ...]:
    pairs = []
    for case_id, prediction in sorted(files.items()):
        reference = labels_dir / prediction.name
        if not reference.is_file():
            raise DatasetError(f"no reference label map for the cross-validation case '{case_id}'", reference)
        pairs.append((reference, prediction))
    return tuple(pairs)


@dataclass(frozen=True)
class _Context:
    results_dir: Path
    labels_dir: Path
    description: DatasetDescription
    folds: tuple[int, ...]
    output_dir: Path
    num_processes: int


def _score(ctx: _Context, name: str, configurations: tuple[str, ...], pairs: tuple[CasePair, ...]) -> Candidate:
    labels = scored_labels(ctx.description)
    scores = mean_dice(pairs, labels, ctx.description.ignore_label, ctx.num_processes)
    candidate = Candidate(name, configurations, scores, pairs=pairs)
    logger.info("%s: mean foreground Dice %.5f over %d case(s)", name, candidate.foreground_dice, len(pairs))
    return candidate


def _ensemble_pair(ctx: _Context, first: str, second: str, files: dict[str, dict[str, Path]]) -> Candidate:
    name = f"{first}+{second}"
    if set(files[first]) != set(files[second]):
        return Candidate(name, (first, second), {}, f"{first} and {second} validated different cases")
    missing = [(config, case) for config in (first, second) for case, path in sorted(files[config].items())
               if not path.with_name(f"{case}.npz").is_file()]
    if missing:
        config, case = missing[0]
        return Candidate(name, (first, second), {},
                         f"no probabilities for case '{case}' of {config} ({len(missing)} missing); train with "
                         "--save-probabilities (or rerun its validation) to compare the ensemble")
    folder = ctx.output_dir / "ensembles" / name
    order = LabelScheme.from_description(ctx.description).regions_class_order
    for case, path in progress(sorted(files[first].items()), f"Ensembling {name}", total=len(files[first])):
        members = (path.with_name(f"{case}.npz"), files[second][case].with_name(f"{case}.npz"))
        # Recomputed every run: cached files would go stale when a member is retrained.
        ensemble_case(EnsembleCase(case, members, path, folder / path.name), order)
    outputs = {case: folder / path.name for case, path in files[first].items()}
    return _score(ctx, name, (first, second), _reference_pairs(outputs, ctx.labels_dir))


def _candidates(ctx: _Context) -> list[Candidate]:
    ending = ctx.description.file_ending
    configs = sorted(p.name for p in ctx.results_dir.iterdir()
                     if p.is_dir() and p.name != FIND_BEST_FOLDER and any(p.glob("fold_*")))
    candidates: list[Candidate] = []
    files: dict[str, dict[str, Path]] = {}
    for config in configs:
        found = _validation_files(ctx.results_dir / config, ctx.folds, ending)
        if isinstance(found, str):
            candidates.append(Candidate(config, (config,), {}, found))
        elif not found:
            candidates.append(Candidate(config, (config,), {}, f"no {ending} predictions in its validation folders"))
        else:
            files[config] = found
            candidates.append(_score(ctx, config, (config,), _reference_pairs(found, ctx.labels_dir)))
    for first, second in itertools.combinations(sorted(files), 2):
        candidates.append(_ensemble_pair(ctx, first, second, files))
    return candidates


def _predict_commands(choice: FindBestChoice, results_dir: Path, prefix: str) -> tuple[str, ...]:
    folds = " ".join(str(f) for f in choice.folds)
    pp = shlex.quote(str(choice.postprocessing_path(results_dir)))
    if not choice.ensemble:
        return (f"{prefix} predict -i INPUT -o OUTPUT -d {choice.dataset} -c {choice.configurations[0]} -f {folds} "
                f"--postprocessing {pp}",)
    commands = [f"{prefix} predict -i INPUT -o OUTPUT/{config} -d {choice.dataset} -c {config} -f {folds} "
                "--save-probabilities" for config in choice.configurations]
    inputs = " ".join(f"OUTPUT/{config}" for config in choice.configurations)
    dataset_json = shlex.quote(str(results_dir / choice.configurations[0] / "dataset.json"))
    commands.append(f"{prefix} ensemble -i {inputs} -o OUTPUT/ensemble -j {dataset_json} --postprocessing {pp}")
    return tuple(commands)


def _summary_json(candidates: Sequence[Candidate], choice: FindBestChoice) -> dict:
    return nan_to_none({
        "dataset": choice.dataset,
        "folds": list(choice.folds),
        "score": "mean over labels/regions of the mean Dice over all cross-validation cases (no postprocessing)",
        "candidates": [{"name": c.name, "configurations": list(c.configurations), "ensemble": len(c.configurations) > 1,
                        "foreground_dice": c.foreground_dice, "mean_dice": c.mean_dice, "num_cases": len(c.pairs),
                        "skipped": c.skipped} for c in candidates],
        "chosen": "+".join(choice.configurations),
    })


def find_best(results_dir: Path, raw_dataset_dir: Path, folds: Sequence[int] = (0, 1, 2, 3, 4),
              num_processes: int = 1, command_prefix: str = "autounet") -> FindBestResult:
    """Compare every trained configuration and pairwise ensemble; decide postprocessing; write the choice.

    Args:
        results_dir: ``results/<DatasetName>``.
        raw_dataset_dir: ``raw/<DatasetName>`` with ``dataset.json`` and ``labelsTr``.
        folds: Folds that must all be finished for a configuration to count.
        num_processes: Worker processes for scoring.
        command_prefix: How the printed commands start (``autounet``, plus ``--data-root DIR`` if needed).

    Returns:
        Every candidate, the choice, its postprocessing and the commands; files go to ``find_best/``.

    Raises:
        DatasetError: No raw dataset or labels, no finished configuration, a reference is missing.
    """
    results_dir, raw_dataset_dir = Path(results_dir), Path(raw_dataset_dir)
    if not results_dir.is_dir():
        raise DatasetError("no trained configuration for this dataset; train one first", results_dir)
    description = load_dataset_json(raw_dataset_dir / "dataset.json")
    ctx = _Context(results_dir, raw_dataset_dir / "labelsTr", description, tuple(folds),
                   results_dir / FIND_BEST_FOLDER, num_processes)
    if len(description.tasks) > 1:
        return _find_best_tasks(ctx, command_prefix)
    candidates = _candidates(ctx)
    best = _best(candidates, ctx)
    plan = determine_postprocessing(best.pairs, scored_labels(description), description.is_region_based,
                                    description.ignore_label, num_processes)
    save_postprocessing(ctx.output_dir / POSTPROCESSING_FILE, plan)
    after = mean_dice(best.pairs, scored_labels(description), description.ignore_label, num_processes, plan)
    return _write_choice(ctx, candidates, best, plan, list(after.values()), command_prefix)


def _best(candidates: list[Candidate], ctx: _Context) -> Candidate:
    """The best scored candidate (skipped ones logged).

    Raises:
        DatasetError: None was scored.
    """
    for candidate in candidates:
        if candidate.skipped:
            logger.info("%s: skipped: %s", candidate.name, candidate.skipped)
    scored = [c for c in candidates if c.skipped is None]
    if not scored:
        reasons = "; ".join(f"{c.name}: {c.skipped}" for c in candidates) or "no configuration folder"
        raise DatasetError(f"no configuration has finished folds {', '.join(map(str, ctx.folds))} ({reasons})",
                           ctx.results_dir)
    # Ties go to the first: single configurations come before ensembles (cheaper to run), then by name.
    return max(scored, key=lambda c: -math.inf if math.isnan(c.foreground_dice) else c.foreground_dice)


def _write_choice(ctx: _Context, candidates: list[Candidate], best: Candidate,
                  plan: PostprocessingPlan | TaskPostprocessing, after: list[float],
                  command_prefix: str) -> FindBestResult:
    """Write ``choice.json``, ``summary.json`` and the predict commands for the winner."""
    results_dir, pp_file = ctx.results_dir, ctx.output_dir / POSTPROCESSING_FILE
    after_fg = [v for v in after if not math.isnan(v)]
    choice = FindBestChoice(
        dataset=results_dir.name, configurations=best.configurations, folds=ctx.folds,
        ensemble=len(best.configurations) > 1,
        postprocessing_file=pp_file.relative_to(results_dir).as_posix(),
        cv_dice=None if math.isnan(best.foreground_dice) else best.foreground_dice,
        cv_dice_postprocessed=sum(after_fg) / len(after_fg) if after_fg else None)
    save_dataclass(ctx.output_dir / CHOICE_FILE, choice)
    write_json(ctx.output_dir / "summary.json", _summary_json(candidates, choice))
    commands = _predict_commands(choice, results_dir.absolute(), command_prefix)
    with atomic_write(ctx.output_dir / "predict_commands.txt") as handle:
        handle.write("\n".join(commands) + "\n")
    return FindBestResult(tuple(candidates), choice, plan, commands, ctx.output_dir)


def _find_best_tasks(ctx: _Context, command_prefix: str) -> FindBestResult:
    """:func:`find_best` for a dataset of several label maps: configurations scored on every area task, no
    ensembles, the winner's postprocessing decided per task."""
    areas = [task for task in ctx.description.tasks if task.kind == "area"]
    ending = ctx.description.file_ending
    candidates, task_pairs = [], {}
    configs = sorted(p.name for p in ctx.results_dir.iterdir()
                     if p.is_dir() and p.name != FIND_BEST_FOLDER and any(p.glob("fold_*")))
    for config in configs:
        scores: dict[str, float] = {}
        pairs: dict[str, tuple[CasePair, ...]] = {}
        for task in areas:
            found = _validation_files(ctx.results_dir / config, ctx.folds, ending, task.name)
            if isinstance(found, str) or not found:
                candidates.append(Candidate(config, (config,), {}, found or f"no {task.name}/ validation maps"))
                break
            pairs[task.name] = _reference_pairs(found, ctx.labels_dir / task.name)
            means = mean_dice(pairs[task.name], scored_labels(task), task.ignore_label, ctx.num_processes)
            scores.update({f"{task.name}/{name}": value for name, value in means.items()})
        else:
            task_pairs[config] = pairs
            candidates.append(Candidate(config, (config,), scores,
                                        pairs=tuple(p for task_list in pairs.values() for p in task_list)))
            logger.info("%s: mean foreground Dice %.5f over the area tasks", config, candidates[-1].foreground_dice)
    best = _best(candidates, ctx)
    plan = determine_task_postprocessing(task_pairs[best.name], areas, ctx.num_processes)
    save_task_postprocessing(ctx.output_dir / POSTPROCESSING_FILE, plan)
    after = [value for task in areas
             for value in mean_dice(task_pairs[best.name][task.name], scored_labels(task), task.ignore_label,
                                    ctx.num_processes, plan.for_task(task.name)).values()]
    return _write_choice(ctx, candidates, best, plan, after, command_prefix)
