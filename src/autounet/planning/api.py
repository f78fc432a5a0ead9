"""Planning as one call: verify -> fingerprint -> plan -> write plans, for the CLI and scripts."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from autounet.dataset.raw import RawDataset, load_raw_dataset
from autounet.dataset.verify import require_valid_dataset
from autounet.fingerprint.extract import ensure_fingerprint
from autounet.planning.planner import plan_experiment
from autounet.planning.plans import Plans, describe_plans, save_plans

__all__ = ["plan_dataset", "plans_file_name"]

logger = logging.getLogger(__name__)


def plans_file_name(preset: str) -> str:
    """``plans`` for the default preset, ``plans_<preset>`` otherwise (without ``.json``)."""
    return "plans" if preset == "default" else f"plans_{preset}"


def plan_dataset(dataset_root: Path, preprocessed_root: Path, preset: str = "default",
                 gpu_memory_gib: float | None = None, num_processes: int = 1, verify: bool = True,
                 overwrite_fingerprint: bool = False) -> tuple[Plans, Path]:
    """Verify a raw dataset, extract (or reuse) its fingerprint, plan, and write the plans.

    Args:
        dataset_root: The raw ``DatasetNNN_Name`` folder.
        preprocessed_root: The ``preprocessed/`` data folder; output goes to ``<root>/<DatasetName>/``.
        preset: Planner preset (``default``, ``resenc_m``, ``resenc_l``, ``resenc_xl``).
        gpu_memory_gib: Memory budget; the preset's default when ``None``.
        num_processes: Worker processes for verification and fingerprinting.
        verify: Run the integrity checks first (they stop planning on any problem).
        overwrite_fingerprint: Re-extract the fingerprint even if one exists.

    Returns:
        The plans and the path they were written to.
    """
    if verify:
        require_valid_dataset(dataset_root, num_processes)
    dataset: RawDataset = load_raw_dataset(dataset_root)
    output = preprocessed_root / dataset.name
    fingerprint = ensure_fingerprint(dataset, output, num_processes, overwrite=overwrite_fingerprint)
    plans = plan_experiment(fingerprint, dataset.description, dataset.name, preset, gpu_memory_gib)
    path = output / f"{plans_file_name(preset)}.json"
    save_plans(path, plans)
    # A self-describing folder: training and inference need dataset.json beside the plans.
    shutil.copyfile(dataset_root / "dataset.json", output / "dataset.json")
    logger.info("plans written to %s\n%s", path, describe_plans(plans))
    return plans, path
