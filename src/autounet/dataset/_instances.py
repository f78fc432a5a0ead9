"""The instance checks of ``verify`` for datasets with ``"instance_labels": true`` (one case at a time).

The rules are those of ``autounet convert nndet`` (:func:`autounet.dataset.nndet.check_instances`), applied
to autounet's layout: the instance JSON beside the label exists and is valid, the ids of the map are
exactly the JSON's keys ``1..N``, every class is declared in ``dataset.json`` (class ``c`` is label
``c + 1``), and no listed instance is empty.
"""

from __future__ import annotations

from pathlib import Path

from autounet.dataset.nndet import check_instances, read_instances_json
from autounet.errors import DatasetError

__all__ = ["check_instance_label"]


Finding = tuple[Path, str]  # (file, one-line message), made into a verify Problem by the caller


def check_instance_label(label_path: Path, values: frozenset[int], instances_path: Path, classes: dict[int, str]
                         ) -> tuple[frozenset[int] | None, list[Finding], list[Finding]]:
    """Check one instance map (its values already read) against its JSON and the declared classes.

    Args:
        label_path: The instance map.
        values: The values present in it (0 included when present).
        instances_path: The ``{case}.json`` beside it.
        classes: Declared class (from 0) -> name.

    Returns:
        ``(semantic_values, problems, warnings)``: the semantic label values of the case (0 and ``c + 1`` per
        class present), or ``None`` when the instances could not be checked; the faults; a warning for a
        case without any instance.
    """
    if not instances_path.is_file():
        return None, [(instances_path, f"instance file missing: a dataset with instance labels needs "
                                       f"{instances_path.name} beside {label_path.name}")], []
    negative = sorted(v for v in values if v < 0)
    if negative:
        return None, [(label_path, f"negative instance id(s) {negative}; instance maps hold 0 and 1..N")], []
    try:
        instances = read_instances_json(instances_path)
        check_instances(values - {0}, instances, classes, label_path, instances_path)
    except DatasetError as exc:
        return None, [(exc.path or instances_path, " ".join(exc.problem.split()))], []
    warnings = [] if instances else [(label_path, "no instance in this case (background only)")]
    return frozenset({0} | {class_id + 1 for class_id in instances.values()}), [], warnings
