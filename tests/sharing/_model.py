"""Builders shared by the model-sharing tests: a tiny trained-model results folder, zips, an HTTP server."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import shutil
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from autounet.ensembling.find_best import FindBestChoice
from autounet.io.checkpoints import save_checkpoint
from autounet.io.jsonio import write_json
from autounet.io.serialization import save_dataclass
from autounet.networks.unet import build_network
from autounet.planning.api import plan_dataset
from autounet.planning.plans import Plans, load_plans, save_plans
from autounet.postprocessing import PostprocessingPlan, save_postprocessing
from autounet.sharing.manifest import MANIFEST_NAME
from tests.conftest import write_tiny_dataset

DATASET = "Dataset999_Tiny"
CONFIGURATION = "3d_fullres"


def build_results(root: Path) -> Path:
    """``root/results/Dataset999_Tiny`` with an untrained 3d_fullres model (folds 0, 1), a cascade pair
    (3d_lowres + 3d_cascade_fullres, fold 0), postprocessing.json and find_best/ files.

    The checkpoints hold optimizer state too, as the trainer's final checkpoints do, so slimming shows.
    """
    raw = write_tiny_dataset(root / "raw", num_cases=2, num_channels=1, shape=(8, 16, 16))
    plans, plans_path = plan_dataset(raw, root / "preprocessed", num_processes=1, verify=False)
    fullres = plans.configuration(CONFIGURATION)
    # The tiny dataset plans no cascade; add one by hand (same network, so the same weights fit).
    plans = replace(plans, configurations={
        **plans.configurations,
        "3d_lowres": replace(fullres, name="3d_lowres"),
        "3d_cascade_fullres": replace(fullres, name="3d_cascade_fullres", previous_stage="3d_lowres"),
    })
    dataset_results = root / "results" / DATASET
    for configuration, folds in ((CONFIGURATION, (0, 1)), ("3d_lowres", (0,)), ("3d_cascade_fullres", (0,))):
        folder = dataset_results / configuration
        folder.mkdir(parents=True)
        save_plans(folder / "plans.json", plans)
        shutil.copyfile(plans_path.parent / "dataset.json", folder / "dataset.json")
        for fold in folds:
            network = build_network(fullres.network, 1, 3, deep_supervision=True)
            save_checkpoint(folder / f"fold_{fold}" / "checkpoint_final.pt", {
                "network": network.state_dict(), "epoch": 1,
                "optimizer": {"state": {}, "param_groups": [{"lr": 0.01}]},
                "metadata": {"configuration": configuration, "mirror_axes": [0, 1, 2]}})
    write_json(dataset_results / CONFIGURATION / "postprocessing.json", {"schema_version": 1})
    write_choice(dataset_results, "find_best/postprocessing.json")
    save_postprocessing(dataset_results / "find_best" / "postprocessing.json",
                        PostprocessingPlan(largest_component_foreground=True))
    return dataset_results


def write_choice(dataset_results: Path, postprocessing_file: str) -> None:
    """find-best's ``choice.json`` choosing 3d_fullres alone, with the given ``postprocessing_file``."""
    save_dataclass(dataset_results / "find_best" / "choice.json", FindBestChoice(
        dataset=DATASET, configurations=(CONFIGURATION,), folds=(0, 1), ensemble=False,
        postprocessing_file=postprocessing_file, cv_dice=0.5, cv_dice_postprocessed=0.6))


def plans_of(dataset_results: Path) -> Plans:
    """The plans of the 3d_fullres model folder."""
    return load_plans(dataset_results / CONFIGURATION / "plans.json")


def read_members(archive: Path) -> dict[str, bytes]:
    """Every file member of a zip except the manifest, by name."""
    with zipfile.ZipFile(archive) as handle:
        return {name: handle.read(name) for name in handle.namelist() if name != MANIFEST_NAME}


def read_manifest(archive: Path) -> dict:
    """The parsed manifest of a zip."""
    with zipfile.ZipFile(archive) as handle:
        return json.loads(handle.read(MANIFEST_NAME))


def write_zip(path: Path, members: dict[str, bytes], manifest: dict | None, *, listed: dict[str, bytes] | None = None,
              symlinks: tuple[str, ...] = ()) -> Path:
    """Write a zip of ``members`` plus a manifest whose ``files`` hash ``listed`` (default: ``members``).

    Args:
        path: The zip to write.
        members: Member name -> content, written in order (a name may repeat through ``symlinks``).
        manifest: Manifest fields (``files`` is replaced); ``None`` writes no manifest.
        listed: What the manifest claims the members are.
        symlinks: Members written with the mode bits of a symbolic link.
    """
    with zipfile.ZipFile(path, "w") as handle:
        for name, content in members.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 if name in symlinks else 0o100644) << 16
            handle.writestr(info, content)
        if manifest is not None:
            files = {name: hashlib.sha256(data).hexdigest() for name, data in (listed or members).items()}
            handle.writestr(MANIFEST_NAME, json.dumps({**manifest, "files": files}))
    return path


@contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    """Serve ``folder`` over HTTP on 127.0.0.1 (a free port) in a background thread; yields the base URL."""

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
