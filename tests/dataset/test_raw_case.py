"""A raw case lists its label maps (one per task); nnU-Net v2 datasets have exactly one."""

from __future__ import annotations

from pathlib import Path

from autounet.dataset.raw import RawCase, list_test_cases, load_raw_dataset
from tests.conftest import write_tiny_dataset


def test_training_cases_have_one_label_map_and_test_cases_none(tmp_path: Path) -> None:
    raw = write_tiny_dataset(tmp_path, num_cases=2, num_channels=1)
    for case in load_raw_dataset(raw).cases:
        assert case.label_files == (raw / "labelsTr" / f"{case.case_id}.nii.gz",)
        assert case.label_file == case.label_files[0]
    (raw / "imagesTr").rename(raw / "imagesTs")
    assert all(case.label_files == () and case.label_file is None for case in list_test_cases(raw, ".nii.gz"))


def test_several_label_maps_keep_their_order() -> None:
    case = RawCase("c", (Path("c_0000.png"),), (Path("zones/c.png"), Path("front/c.png")))
    assert case.label_file == Path("zones/c.png") and len(case.label_files) == 2
