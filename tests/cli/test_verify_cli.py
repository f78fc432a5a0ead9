"""``autounet verify``: exit codes, one line per problem on stderr, summary on stdout, dataset untouched."""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from autounet.cli.main import main

NII = ".nii.gz"


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Content hash and mtime of every file and folder under ``root``."""
    return {str(p.relative_to(root)): ("dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest(),
                                       p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def _truncate(root: Path) -> None:
    path = root / "imagesTr" / f"case_001_0000{NII}"
    path.write_bytes(path.read_bytes()[:200])


def _break_json(root: Path) -> None:
    (root / "dataset.json").write_text('{"labels": {"background": 0}')


def _two_problems(root: Path) -> None:
    (root / "labelsTr" / f"case_002{NII}").unlink()
    (root / "imagesTr" / f"case_000_0001{NII}").unlink()


def _rewrite(root: Path, change: Callable[[nib.Nifti1Image], nib.Nifti1Image]) -> None:
    path = root / "imagesTr" / f"case_001_0000{NII}"
    nib.save(change(nib.load(path)), path)


def _with_affine(image: nib.Nifti1Image, affine: np.ndarray) -> nib.Nifti1Image:
    out = nib.Nifti1Image(np.asarray(image.dataobj), affine)
    out.header.set_qform(None, code=0)
    out.header.set_sform(affine, code=2)
    return out


def _zero_spacing(root: Path) -> None:
    path = root / "imagesTr" / f"case_001_0000{NII}"
    block = bytearray(gzip.decompress(path.read_bytes()))
    block[84:88] = np.float32(0.0).tobytes()  # pixdim[2]; nibabel's save would rewrite it from the affine
    path.write_bytes(gzip.compress(bytes(block)))


def _singular_affine(root: Path) -> None:
    affine = np.eye(4)
    affine[:3, 1] = affine[:3, 0]  # two voxel axes along the same world direction
    _rewrite(root, lambda im: _with_affine(im, affine))


def _sheared_affine(root: Path) -> None:
    affine = np.eye(4)
    affine[0, 1] = 0.5
    _rewrite(root, lambda im: _with_affine(im, affine))


def _complex_voxels(root: Path) -> None:
    _rewrite(root, lambda im: nib.Nifti1Image(np.asarray(im.dataobj).astype(np.complex64), im.affine))


def _rgb_voxels(root: Path) -> None:
    def rgb(im: nib.Nifti1Image) -> nib.Nifti1Image:
        data = np.zeros(im.shape, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
        return nib.Nifti1Image(data, im.affine)
    _rewrite(root, rgb)


def _damaged_gzip(root: Path) -> None:
    path = root / "imagesTr" / f"case_001_0000{NII}"
    block = bytearray(path.read_bytes())
    block[-12] ^= 0xFF  # a byte of the compressed stream near its end: decodes, but the CRC no longer matches
    path.write_bytes(bytes(block))


def _absurd_dimensions(root: Path) -> None:
    path = root / "imagesTr" / f"case_001_0000{NII}"
    image = nib.load(path)
    header = image.header.copy()
    header["dim"][1:4] = [30000, 30000, 30000]
    path.write_bytes(gzip.compress(header.binaryblock + b"\0" * 4 + b"\0" * 1000))


# breaker, problems expected as (path relative to the dataset, text in the line)
BROKEN = [
    pytest.param(_truncate, [(f"imagesTr/case_001_0000{NII}", "cannot read image")], id="truncated"),
    pytest.param(_zero_spacing, [(f"imagesTr/case_001_0000{NII}", "spacing must be positive")], id="zero-spacing"),
    pytest.param(_singular_affine, [(f"imagesTr/case_001_0000{NII}", "singular")], id="singular-affine"),
    pytest.param(_sheared_affine, [(f"imagesTr/case_001_0000{NII}", "sheared"),
                                   (f"imagesTr/case_001_0001{NII}", "geometry differs"),
                                   (f"labelsTr/case_001{NII}", "geometry differs")], id="sheared-affine"),
    pytest.param(_complex_voxels, [(f"imagesTr/case_001_0000{NII}", "complex")], id="complex-voxels"),
    pytest.param(_rgb_voxels, [(f"imagesTr/case_001_0000{NII}", "not a real scalar")], id="rgb24-voxels"),
    pytest.param(_damaged_gzip, [(f"imagesTr/case_001_0000{NII}", "damaged gzip")], id="gzip-crc"),
    pytest.param(_absurd_dimensions, [(f"imagesTr/case_001_0000{NII}", "header declares dimensions")],
                 id="absurd-dimensions"),
    pytest.param(_break_json, [("dataset.json", "not valid JSON")], id="malformed-json"),
    pytest.param(_two_problems, [(f"labelsTr/case_002{NII}", "no label file"),
                                 (f"imagesTr/case_000_0001{NII}", "missing channel 1")], id="two-problems"),
]


@pytest.mark.parametrize(("breaker", "expected"), BROKEN)
def test_broken_dataset_exits_1_with_one_line_per_problem(
        tiny_dataset: Callable[..., Path], capsys: pytest.CaptureFixture[str],
        breaker: Callable[[Path], None], expected: list[tuple[str, str]]) -> None:
    root = tiny_dataset()
    breaker(root)
    before = snapshot(root)
    code = main(["verify", "-d", "999", "--data-root", str(root.parents[1]), "-np", "1"])
    captured = capsys.readouterr()
    assert code == 1
    lines = captured.err.strip().splitlines()
    for relative, text in expected:
        assert any(line.startswith(f"{root / relative}: ") and text in line for line in lines), lines
    assert lines[-1] == (f"{len(expected)} problem(s) found in Dataset999_Tiny; fix them and run "
                         "'autounet verify -d 999' again")
    assert captured.out == ""
    assert snapshot(root) == before


def test_clean_dataset_exits_0_with_summary(tiny_dataset: Callable[..., Path],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    root = tiny_dataset()
    before = snapshot(root)
    assert main(["verify", "-d", "Dataset999_Tiny", "--data-root", str(root.parents[1]), "-np", "2"]) == 0
    out = capsys.readouterr().out
    assert "Dataset999_Tiny: no problems found" in out
    assert "3 training, 0 test" in out
    assert "2 (0: CT, 1: MR1)" in out
    assert "3D, file ending .nii.gz" in out
    assert "median 8 x 12 x 12" in out and "median 3 x 1 x 1 mm" in out
    assert "organ=1 (in 3/3 cases)" in out
    assert snapshot(root) == before


def test_dataset_given_as_folder_path(tiny_dataset: Callable[..., Path], tmp_path: Path) -> None:
    root = tiny_dataset()
    assert main(["verify", "-d", str(root), "--data-root", str(tmp_path / "elsewhere")]) == 0


def test_unknown_dataset_is_one_line_error(tiny_dataset: Callable[..., Path],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    root = tiny_dataset()
    assert main(["verify", "-d", "123", "--data-root", str(root.parents[1])]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("autounet verify: error: ") and "no dataset '123'" in err[0]


@pytest.mark.parametrize("breaker", [_truncate, _break_json], ids=["truncated", "malformed-json"])
def test_subprocess_prints_no_traceback(tiny_dataset: Callable[..., Path],
                                        breaker: Callable[[Path], None]) -> None:
    root = tiny_dataset()
    breaker(root)
    before = snapshot(root)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run([sys.executable, "-m", "autounet", "verify", "-d", "999", "--data-root",
                             str(root.parents[1]), "-np", "2"], capture_output=True, text=True, env=env,
                            timeout=120, check=False)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("1 problem(s) found in Dataset999_Tiny")
    assert snapshot(root) == before

