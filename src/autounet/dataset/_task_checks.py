"""Layout checks of multi-task datasets: one label folder per task, ``labelsTr/<task>/`` (and ``labelsTs/<task>/``).

:func:`scan_task_labels` runs after :func:`autounet.dataset._checks.scan_layout` (which leaves the label folders of
a dataset declaring ``tasks`` alone): it reports missing task folders, undeclared folders and loose files in
``labelsTr/``, cases without a map of some task and maps without a case, and attaches to every case the label
files that exist, so that :func:`autounet.dataset._checks.check_case` checks their geometry and values.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from autounet.dataset._checks import (
    Layout,
    Problem,
    TaskLabelFile,
    _pair_images_and_labels,
    _scan_label_folder,
)
from autounet.dataset.description import DatasetDescription

__all__ = ["scan_task_labels"]


def scan_task_labels(root: Path, description: DatasetDescription, layout: Layout) -> None:
    """Check the task label folders of ``root`` and attach each case's label maps to its reading task.

    ``labelsTr/`` must hold one folder per task and nothing else; ``labelsTs/``, when present, likewise for the
    cases of ``imagesTs/``.

    Args:
        root: The dataset folder.
        description: Its validated ``dataset.json``, declaring ``tasks``.
        layout: The result of ``scan_layout``; problems are added and its case tasks replaced in place.
    """
    ending = description.file_ending
    for split, is_test in (("Tr", False), ("Ts", True)):
        labels_root = root / f"labels{split}"
        if not labels_root.is_dir() or not (root / f"images{split}").is_dir():
            continue  # a missing labelsTr/ or imagesTr/ is reported by scan_layout; labelsTs/ is optional
        _loose_entries(labels_root, description, layout)
        cases = {task.case_id: task for task in layout.tasks if task.is_test == is_test}
        images = {case_id: {0: task.image_files[0]} for case_id, task in cases.items() if task.image_files}
        found: dict[str, list[TaskLabelFile]] = {case_id: [] for case_id in cases}
        for task in description.tasks:
            folder = labels_root / task.name
            if not folder.is_dir():
                layout.problems.append(Problem(folder, (
                    f"missing folder labels{split}/{task.name}/; it must hold the '{task.name}' label maps "
                    f"({{case}}{ending}), one per case of images{split}/")))
                continue
            labels = _scan_label_folder(folder, ending, layout)
            first_new = len(layout.problems)
            _pair_images_and_labels(images, labels, folder, ending, layout)
            if is_test:  # the pairing messages name the training folder
                layout.problems[first_new:] = [replace(p, message=p.message.replace("imagesTr/", "imagesTs/"))
                                               for p in layout.problems[first_new:]]
            for case_id, path in labels.items():
                if case_id in found:
                    found[case_id].append(TaskLabelFile(task.name, path, task.allowed_label_values,
                                                        task.ignore_label))
        layout.tasks = [replace(task, task_labels=tuple(found[task.case_id]))
                        if task.is_test == is_test else task for task in layout.tasks]


def _loose_entries(labels_root: Path, description: DatasetDescription, layout: Layout) -> None:
    """Files directly in ``labelsTr/`` and folders that are no declared task."""
    names = {task.name for task in description.tasks}
    for path in sorted(p for p in labels_root.iterdir() if not p.name.startswith(".")):
        if path.is_dir() and path.name not in names:
            layout.problems.append(Problem(path, (
                f"folder '{path.name}' is not a task of dataset.json (tasks: {', '.join(sorted(names))}); "
                "rename or remove it")))
        elif not path.is_dir():
            layout.problems.append(Problem(path, (
                f"label file directly in {labels_root.name}/: dataset.json declares tasks, so each label map "
                f"goes into {labels_root.name}/<task>/")))
