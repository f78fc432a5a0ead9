"""A TIFF whose header declares a shape its file cannot hold is refused before the array is allocated:
one line naming the file, the declared shape and the limit, never a MemoryError or a traceback."""

from __future__ import annotations

import hashlib
import json
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import tifffile

from autounet.cli.main import main
from autounet.errors import ImageIOError
from autounet.io.images import read_image


def _with_declared_shape(path: Path, height: int, width: int) -> None:
    """Patch ImageLength/ImageWidth (and RowsPerStrip) of a one-strip TIFF in place; the data stays tiny."""
    with tifffile.TiffFile(path) as tiff:
        offsets = {tag.name: tag.valueoffset for tag in tiff.pages[0].tags.values()}
        kinds = {tag.name: tag.dtype for tag in tiff.pages[0].tags.values()}
    block = bytearray(path.read_bytes())
    for name, value in (("ImageLength", height), ("ImageWidth", width), ("RowsPerStrip", height)):
        assert kinds[name] == tifffile.DATATYPE.LONG, kinds[name]
        struct.pack_into("<I", block, offsets[name], value)
    path.write_bytes(bytes(block))


def _write(path: Path, data: np.ndarray, compression: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # metadata=None: no shaped description, so the tags alone define the shape (as in other writers' files).
    tifffile.imwrite(path, data, photometric="minisblack", compression=compression, metadata=None,
                     rowsperstrip=data.shape[0])


@pytest.mark.parametrize(("compression", "how"), [(None, "uncompressed"), ("zlib", "ADOBE_DEFLATE-compressed")])
def test_absurd_declared_shape_is_refused_before_reading(tmp_path: Path, compression: str | None,
                                                         how: str) -> None:
    path = tmp_path / "image.tif"
    _write(path, np.arange(64, dtype=np.uint8).reshape(8, 8), compression)
    assert read_image([path])[0].shape == (1, 8, 8)  # the tiny file reads, and the bound lets it
    _with_declared_shape(path, 100_000, 100_000)
    assert tifffile.TiffFile(path).series[0].shape == (100_000, 100_000)  # 10 GB declared, < 1 kB stored
    with pytest.raises(ImageIOError) as error:
        read_image([path])
    message = str(error.value)
    assert "\n" not in message and str(path) in message and "(100000, 100000)" in message, message
    assert f"byte {how} file can hold (at most " in message and "memory" not in message, message


@pytest.mark.parametrize("data", [np.zeros((300, 400), np.uint8), np.zeros((300, 400), bool),
                                  np.zeros((30, 40, 3), np.uint8)], ids=["zeros", "one-bit", "rgb"])
def test_well_compressed_real_images_pass_the_bound(tmp_path: Path, data: np.ndarray) -> None:
    path = tmp_path / "image.tif"
    photometric = "rgb" if data.ndim == 3 else "minisblack"
    tifffile.imwrite(path, data, photometric=photometric, compression=None if data.dtype == bool else "zlib")
    assert read_image([path])[0].size == data.size


def test_verify_names_the_tiff_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    dataset = tmp_path / "raw" / "Dataset998_Tif"
    for case in ("c_000", "c_001"):
        _write(dataset / "imagesTr" / f"{case}_0000.tif", np.arange(64, dtype=np.uint8).reshape(8, 8))
        _write(dataset / "labelsTr" / f"{case}.tif", (np.arange(64).reshape(8, 8) % 2).astype(np.uint8))
    (dataset / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "grey"}, "labels": {"background": 0, "fg": 1}, "numTraining": 2,
        "file_ending": ".tif"}))
    assert main(["verify", "-d", "998", "--data-root", str(tmp_path), "-np", "1", "-q"]) == 0
    broken = dataset / "imagesTr" / "c_001_0000.tif"
    _with_declared_shape(broken, 2**31 - 1, 2**31 - 1)
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in dataset.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["verify", "-d", "998", "--data-root", str(tmp_path), "-np", "1", "-q"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "MemoryError" not in err and "unexpected" not in err, err
    # Progress bars aside (verify's is on stderr), one line per problem, then the summary.
    problems = [line for line in re.sub(r"[^\r\n]*?%\|[^\r\n]*?\]", "", err).splitlines() if line.strip()][:-1]
    assert len(problems) == 1 and problems[0].startswith(f"{broken}: "), err
    assert "(2147483647, 2147483647)" in problems[0] and "at most" in problems[0], err
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in dataset.rglob("*") if p.is_file()} == before
