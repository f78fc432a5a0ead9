"""Format round trips: read an image, write a segmentation with its geometry, check with the native library.

Geometry must survive bit for bit where the format stores it (NIfTI header fields, ITK spacing/origin/
direction, TIFF sidecar), because predictions are overlaid on the source images in other tools.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813 - the package's conventional alias
import tifffile
from PIL import Image
from scipy.spatial.transform import Rotation

from autounet.errors import ImageIOError
from autounet.io import ImageGeometry, read_image, read_segmentation, write_image, write_segmentation

SHAPE_XYZ = (7, 6, 5)  # NIfTI / ITK index order (x, y, z); arrays come back as (z, y, x)
ALL_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".png", ".bmp", ".tif", ".tiff")


def _volume(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(50.0, 20.0, size=SHAPE_XYZ).astype(np.float32)


def _labels_of(image: np.ndarray) -> np.ndarray:
    return np.digitize(image, [40.0, 60.0]).astype(np.int64)  # values 0, 1, 2


def _oblique(angles_deg: tuple[float, float, float], zooms: tuple[float, float, float],
             origin: tuple[float, float, float]) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = Rotation.from_euler("xyz", angles_deg, degrees=True).as_matrix() @ np.diag(zooms)
    affine[:3, 3] = origin
    return affine


def _diagonal(zooms: tuple[float, float, float], origin: tuple[float, float, float]) -> np.ndarray:
    affine = np.diag([*zooms, 1.0])
    affine[:3, 3] = origin
    return affine


def _nifti(affine: np.ndarray, qform_code: int, sform_code: int, image_class: type = nib.Nifti1Image,
           data: np.ndarray | None = None, sform: np.ndarray | None = None) -> nib.Nifti1Image:
    # No affine here: nibabel would overwrite the header's forms with it when saving.
    image = image_class(_volume() if data is None else data, None)
    image.header.set_qform(affine if qform_code else None, code=qform_code)
    image.header.set_sform((affine if sform is None else sform) if sform_code else None, code=sform_code)
    return image


def _sheared(affine: np.ndarray) -> np.ndarray:
    sheared = affine.copy()
    sheared[0, 1] += 0.3  # an sform may hold shear, which a qform cannot represent
    return sheared


OBLIQUE = _oblique((20.0, -35.0, 50.0), (0.7, 1.3, 3.1), (-12.5, 40.25, 7.125))
NIFTI_CASES = {
    "oblique_q1_s4": lambda: _nifti(OBLIQUE, 1, 4),
    "oblique_single_axis": lambda: _nifti(_oblique((0.0, 0.0, 30.0), (0.5, 0.5, 2.0), (1, 2, 3)), 2, 2),
    "LAS": lambda: _nifti(_diagonal((-0.8, 1.2, 2.5), (10.0, -20.0, 30.0)), 1, 1),
    "LPS": lambda: _nifti(_diagonal((-0.9, -0.9, 3.0), (90.0, 120.0, -60.0)), 1, 1),
    "RPI": lambda: _nifti(_diagonal((1.0, -1.1, -2.0), (-5.0, 5.0, 5.0)), 1, 1),
    "qform_only": lambda: _nifti(OBLIQUE, 1, 0),
    "sform_only_sheared": lambda: _nifti(_sheared(OBLIQUE), 0, 2),
    "different_q_and_s": lambda: _nifti(OBLIQUE, 1, 1, sform=_sheared(OBLIQUE)),
    "no_codes": lambda: _nifti(_diagonal((0.8, 1.2, 2.5), (0, 0, 0)), 0, 0),
    "nifti2": lambda: _nifti(OBLIQUE, 1, 4, image_class=nib.Nifti2Image),
    "int16_scaled": lambda: _scaled_int16(),
}


def _scaled_int16() -> nib.Nifti1Image:
    image = _nifti(OBLIQUE, 1, 1, data=(_volume() * 10).astype(np.int16))
    image.header.set_slope_inter(0.5, -3.0)
    return image


def test_nifti_cases_are_what_they_claim(tmp_path: Path) -> None:
    nib.save(NIFTI_CASES["different_q_and_s"](), tmp_path / "qs.nii.gz")
    header = nib.load(tmp_path / "qs.nii.gz").header
    assert not np.allclose(header.get_qform(), header.get_sform())
    nib.save(NIFTI_CASES["qform_only"](), tmp_path / "q.nii.gz")
    header = nib.load(tmp_path / "q.nii.gz").header
    assert (int(header["qform_code"]), int(header["sform_code"])) == (1, 0)
    nib.save(NIFTI_CASES["sform_only_sheared"](), tmp_path / "s.nii.gz")
    header = nib.load(tmp_path / "s.nii.gz").header
    assert (int(header["qform_code"]), int(header["sform_code"])) == (0, 2)
    assert np.allclose(header.get_sform(), _sheared(OBLIQUE))


def _assert_same_nifti_geometry(written: nib.Nifti1Image, source: nib.Nifti1Image) -> None:
    assert type(written.header) is type(source.header)
    assert np.array_equal(written.affine, source.affine)
    assert np.array_equal(written.header.get_qform(), source.header.get_qform())
    assert np.array_equal(written.header.get_sform(), source.header.get_sform())
    assert int(written.header["qform_code"]) == int(source.header["qform_code"])
    assert int(written.header["sform_code"]) == int(source.header["sform_code"])
    assert np.array_equal(written.header["pixdim"][1:4], source.header["pixdim"][1:4])


def _assert_index_to_world(geometry: ImageGeometry, affine: np.ndarray, shape_zyx: tuple[int, ...]) -> None:
    """World of array index (z, y, x) must equal ``affine @ (x, y, z, 1)``."""
    rng = np.random.default_rng(1)
    indices = np.stack([rng.integers(0, s, 10) for s in shape_zyx], axis=1)
    for index in [*indices, np.zeros(3, int)]:
        ours = geometry.index_to_world() @ np.r_[index, 1]
        theirs = affine @ np.r_[index[::-1], 1]
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-9)


@pytest.mark.parametrize("ending", [".nii.gz", ".nii"])
@pytest.mark.parametrize("case", sorted(NIFTI_CASES))
def test_nifti_round_trip(tmp_path: Path, case: str, ending: str) -> None:
    source_file, seg_file = tmp_path / f"img{ending}", tmp_path / f"seg{ending}"
    nib.save(NIFTI_CASES[case](), source_file)
    source = nib.load(source_file)
    expected = np.asanyarray(source.dataobj).transpose(2, 1, 0)

    image, geometry = read_image([source_file])

    assert image.shape == (1, *expected.shape) and image.dtype == np.float32
    assert np.array_equal(image[0], expected.astype(np.float32))
    columns = source.affine[:3, :3]
    np.testing.assert_allclose(geometry.spacing, np.linalg.norm(columns, axis=0)[::-1], rtol=1e-12)
    np.testing.assert_allclose(geometry.origin, source.affine[:3, 3], rtol=0, atol=1e-12)
    assert geometry.world_frame == "RAS"
    _assert_index_to_world(geometry, source.affine, expected.shape)

    labels = _labels_of(image[0])
    write_segmentation(labels, geometry, seg_file)
    written = nib.load(seg_file)
    _assert_same_nifti_geometry(written, source)
    assert written.get_data_dtype() == np.uint8
    assert written.header["dim"][0] == 3
    assert np.array_equal(np.asanyarray(written.dataobj), labels.transpose(2, 1, 0))

    # The segmentation read back by autounet matches, and an image rewrite keeps values exactly.
    seg, seg_geometry = read_segmentation(seg_file)
    assert np.array_equal(seg, labels) and seg_geometry.mismatch(geometry) is None
    write_image(image[0], geometry, tmp_path / f"copy{ending}")
    copy = nib.load(tmp_path / f"copy{ending}")
    _assert_same_nifti_geometry(copy, source)
    assert np.array_equal(np.asanyarray(copy.dataobj), expected.astype(np.float32).transpose(2, 1, 0))


def test_nifti_2d_file_becomes_one_slice(tmp_path: Path) -> None:
    data = np.arange(20, dtype=np.float32).reshape(4, 5)
    nib.save(nib.Nifti1Image(data, _diagonal((0.5, 0.7, 1.0), (1, 2, 3))), tmp_path / "flat.nii.gz")
    image, geometry = read_image([tmp_path / "flat.nii.gz"])
    assert image.shape == (1, 1, 5, 4)
    assert np.array_equal(image[0, 0], data.T)
    assert geometry.spacing == pytest.approx((1.0, 0.7, 0.5), rel=1e-6)


def _itk_image(direction: np.ndarray, ndim: int = 3) -> sitk.Image:
    array = np.random.default_rng(2).normal(50.0, 20.0, size=SHAPE_XYZ[::-1][-ndim:]).astype(np.float32)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.7, 1.3, 3.1)[:ndim])
    image.SetOrigin((-12.5, 40.25, 7.123456789012345)[:ndim])
    image.SetDirection(tuple(float(v) for v in direction.ravel()))
    return image


ITK_DIRECTIONS = {
    "oblique": Rotation.from_euler("xyz", (20.0, -35.0, 50.0), degrees=True).as_matrix(),
    "flipped": np.diag([-1.0, 1.0, -1.0]),
    "permuted": np.array([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]]),
}


@pytest.mark.parametrize("ending", [".nrrd", ".nhdr", ".mha", ".mhd"])
@pytest.mark.parametrize("direction", sorted(ITK_DIRECTIONS))
def test_itk_round_trip(tmp_path: Path, ending: str, direction: str) -> None:
    source_file, seg_file = tmp_path / f"img{ending}", tmp_path / f"seg{ending}"
    sitk.WriteImage(_itk_image(ITK_DIRECTIONS[direction]), str(source_file))
    source = sitk.ReadImage(str(source_file))

    image, geometry = read_image([source_file])

    assert np.array_equal(image[0], sitk.GetArrayFromImage(source))
    assert geometry.spacing == tuple(reversed(source.GetSpacing()))
    assert geometry.origin == source.GetOrigin() and geometry.world_frame == "LPS"
    rng = np.random.default_rng(3)
    for index_zyx in rng.integers(0, 5, size=(10, 3)):
        ours = (geometry.index_to_world() @ np.r_[index_zyx, 1])[:3]
        theirs = source.TransformIndexToPhysicalPoint([int(i) for i in index_zyx[::-1]])
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-9)

    labels = _labels_of(image[0])
    write_segmentation(labels, geometry, seg_file)
    written = sitk.ReadImage(str(seg_file))
    _assert_same_itk_geometry(written, source, tmp_path / f"rewrite{ending}")
    assert written.GetPixelID() == sitk.sitkUInt8
    assert np.array_equal(sitk.GetArrayFromImage(written), labels)


def _assert_same_itk_geometry(written: sitk.Image, source: sitk.Image, rewrite_file: Path) -> None:
    """Exactly what SimpleITK itself writes for ``source``; MetaImage exactly ``source``'s geometry.

    NRRD stores ``direction * spacing`` vectors and ITK splits them with a norm, so a rotated NRRD can
    lose the last bit of its spacing on any rewrite, SimpleITK's own included.
    """
    sitk.WriteImage(source, str(rewrite_file))
    reference = sitk.ReadImage(str(rewrite_file))
    assert written.GetSpacing() == reference.GetSpacing()
    assert written.GetOrigin() == reference.GetOrigin()
    assert written.GetDirection() == reference.GetDirection()
    if rewrite_file.suffix in (".mha", ".mhd"):
        assert (written.GetSpacing(), written.GetOrigin(), written.GetDirection()) == (
            source.GetSpacing(), source.GetOrigin(), source.GetDirection())
    np.testing.assert_allclose(written.GetSpacing(), source.GetSpacing(), rtol=1e-15)
    np.testing.assert_allclose(written.GetDirection(), source.GetDirection(), rtol=0, atol=1e-15)
    assert written.GetOrigin() == source.GetOrigin()


@pytest.mark.parametrize("ending", [".nrrd", ".mha"])
def test_itk_2d_round_trip(tmp_path: Path, ending: str) -> None:
    angle = np.deg2rad(25.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    sitk.WriteImage(_itk_image(rotation, ndim=2), str(tmp_path / f"img{ending}"))
    source = sitk.ReadImage(str(tmp_path / f"img{ending}"))
    image, geometry = read_image([tmp_path / f"img{ending}"])
    assert image.shape == (1, 6, 7) and geometry.ndim == 2
    write_segmentation(_labels_of(image[0]), geometry, tmp_path / f"seg{ending}")
    written = sitk.ReadImage(str(tmp_path / f"seg{ending}"))
    _assert_same_itk_geometry(written, source, tmp_path / f"rewrite{ending}")


def test_nifti_geometry_written_as_nrrd_matches_itk_reading_of_the_nifti(tmp_path: Path) -> None:
    nib.save(_nifti(OBLIQUE, 1, 1), tmp_path / "img.nii.gz")
    image, geometry = read_image([tmp_path / "img.nii.gz"])
    write_segmentation(_labels_of(image[0]), geometry, tmp_path / "seg.nrrd")
    itk_of_nifti = sitk.ReadImage(str(tmp_path / "img.nii.gz"))
    written = sitk.ReadImage(str(tmp_path / "seg.nrrd"))
    # ITK converts NIfTI's RAS to LPS itself; ours must agree, up to the header's float32 rounding.
    np.testing.assert_allclose(written.GetOrigin(), itk_of_nifti.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(written.GetDirection(), itk_of_nifti.GetDirection(), atol=1e-5)
    np.testing.assert_allclose(written.GetSpacing(), itk_of_nifti.GetSpacing(), rtol=1e-6)


def test_nrrd_geometry_written_as_nifti_is_converted_to_ras(tmp_path: Path) -> None:
    sitk.WriteImage(_itk_image(ITK_DIRECTIONS["oblique"]), str(tmp_path / "img.nrrd"))
    image, geometry = read_image([tmp_path / "img.nrrd"])
    write_segmentation(_labels_of(image[0]), geometry, tmp_path / "seg.nii.gz")
    back, back_geometry = read_segmentation(tmp_path / "seg.nii.gz")
    assert back_geometry.world_frame == "RAS"
    assert back_geometry.in_frame("LPS").mismatch(geometry, rtol=1e-6, atol=1e-5) is None
    itk_view = sitk.ReadImage(str(tmp_path / "seg.nii.gz"))
    np.testing.assert_allclose(itk_view.GetOrigin(), geometry.origin, atol=1e-4)


def test_in_frame_flips_x_and_y_exactly() -> None:
    direction = ((0.0, 0.6, 0.8), (1.0, 0.0, 0.0), (0.0, 0.8, -0.6))
    geometry = ImageGeometry(spacing=(2.0, 1.0, 0.5), origin=(1.5, -2.0, 0.0), direction=direction,
                             world_frame="RAS")
    lps = geometry.in_frame("LPS")
    assert lps.origin == (-1.5, 2.0, 0.0)
    assert lps.direction == ((0.0, -0.6, -0.8), (-1.0, 0.0, 0.0), (0.0, 0.8, -0.6))
    assert lps.in_frame("RAS") == geometry
    assert ImageGeometry.default(3).in_frame("LPS").world_frame == "pixel"


@pytest.mark.parametrize("ending", [".png", ".bmp", ".tif"])
def test_grey_2d_round_trip(tmp_path: Path, ending: str) -> None:
    grey = np.random.default_rng(4).integers(0, 256, size=(9, 11)).astype(np.uint8)
    Image.fromarray(grey).save(tmp_path / f"img{ending}")
    image, geometry = read_image([tmp_path / f"img{ending}"])
    assert image.shape == (1, 9, 11) and np.array_equal(image[0], grey)
    assert geometry == ImageGeometry.default(2)
    labels = _labels_of(image[0] / 2.0)
    write_segmentation(labels, geometry, tmp_path / f"seg{ending}")
    native = tifffile.imread(tmp_path / "seg.tif") if ending == ".tif" else np.asarray(Image.open(
        tmp_path / f"seg{ending}"))
    assert native.dtype == np.uint8 and np.array_equal(native, labels)


@pytest.mark.parametrize("ending", [".png", ".bmp", ".tif"])
def test_rgb_2d_is_three_channels(tmp_path: Path, ending: str) -> None:
    rgb = np.random.default_rng(5).integers(0, 256, size=(9, 11, 3)).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / f"img{ending}")
    image, geometry = read_image([tmp_path / f"img{ending}"])
    assert image.shape == (3, 9, 11) and np.array_equal(image, np.moveaxis(rgb, -1, 0))
    write_image(image, geometry, tmp_path / f"copy{ending}")
    again, _ = read_image([tmp_path / f"copy{ending}"])
    assert np.array_equal(again, image)


def test_rgba_png_drops_alpha(tmp_path: Path) -> None:
    rgba = np.random.default_rng(6).integers(0, 256, size=(4, 5, 4)).astype(np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "img.png")
    image, _ = read_image([tmp_path / "img.png"])
    assert np.array_equal(image, np.moveaxis(rgba[..., :3], -1, 0))


def test_palette_png_image_is_read_as_its_colours_and_a_palette_label_map_as_its_indices(tmp_path: Path) -> None:
    indices = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8)
    colour = Image.fromarray(indices, mode="P")
    colour.putpalette([0, 0, 0, 200, 10, 10, 10, 10, 250] + [0] * (256 * 3 - 9))
    colour.save(tmp_path / "colour.png")
    grey = Image.fromarray(indices, mode="P")
    grey.putpalette([0, 0, 0, 90, 90, 90, 255, 255, 255] + [0] * (256 * 3 - 9))
    grey.save(tmp_path / "grey.png")
    image, _ = read_image([tmp_path / "colour.png"])  # intensities: what the indices stand for
    assert image.shape == (3, 2, 3)
    np.testing.assert_array_equal(image[:, 0, 1], [200, 10, 10])
    np.testing.assert_array_equal(image[:, 0, 2], [10, 10, 250])
    image, _ = read_image([tmp_path / "grey.png"])  # a grey palette stays one channel
    np.testing.assert_array_equal(image, np.array([[[0, 90, 255], [255, 90, 0]]], dtype=np.float32))
    labels, _ = read_segmentation(tmp_path / "colour.png")  # a palette label map holds its labels as indices
    np.testing.assert_array_equal(labels, indices)


def test_palette_tiff_image_is_read_as_its_colours_and_a_palette_label_map_as_its_indices(tmp_path: Path) -> None:
    indices = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8)
    colour_map = np.zeros((3, 256), dtype=np.uint16)
    colour_map[:, 1] = (50000, 1000, 1000)
    colour_map[:, 2] = (1000, 1000, 60000)
    tifffile.imwrite(tmp_path / "colour.tif", indices, photometric="palette", colormap=colour_map)
    grey_map = np.repeat(np.arange(256, dtype=np.uint16)[None] * 257, 3, axis=0)
    tifffile.imwrite(tmp_path / "grey.tif", indices, photometric="palette", colormap=grey_map)
    image, _ = read_image([tmp_path / "colour.tif"])
    assert image.shape == (3, 2, 3)
    np.testing.assert_array_equal(image[:, 0, 1], [50000, 1000, 1000])
    image, _ = read_image([tmp_path / "grey.tif"])
    np.testing.assert_array_equal(image, indices[None].astype(np.float32) * 257)
    labels, _ = read_segmentation(tmp_path / "colour.tif")
    np.testing.assert_array_equal(labels, indices)


def test_tiff_3d_with_sidecar_round_trip(tmp_path: Path) -> None:
    volume = np.random.default_rng(7).normal(size=(5, 8, 3)).astype(np.float32)  # 3 columns: not RGB
    tifffile.imwrite(tmp_path / "img.tif", volume, photometric="minisblack")
    (tmp_path / "img.json").write_text(json.dumps({"spacing": [2.5, 0.7, 0.6]}))
    image, geometry = read_image([tmp_path / "img.tif"])
    assert image.shape == (1, 5, 8, 3) and np.array_equal(image[0], volume)
    assert geometry.spacing == (2.5, 0.7, 0.6)

    labels = _labels_of(image[0] * 20 + 50)
    write_segmentation(labels, geometry, tmp_path / "seg.tif")
    native = tifffile.imread(tmp_path / "seg.tif")
    assert native.dtype == np.uint8 and np.array_equal(native, labels)
    assert json.loads((tmp_path / "seg.json").read_text()) == {"spacing": [2.5, 0.7, 0.6]}
    with tifffile.TiffFile(tmp_path / "seg.tif") as tif:
        assert tif.pages[0].photometric == tifffile.PHOTOMETRIC.MINISBLACK


def test_tiff_3d_without_sidecar_is_refused(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "img.tif", np.zeros((5, 8, 9), np.uint8))
    with pytest.raises(ImageIOError, match="sidecar") as info:
        read_image([tmp_path / "img.tif"])
    assert "img.tif" in str(info.value)


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*"))


@pytest.mark.parametrize(("ending", "files"), [
    (".nii.gz", ["seg.nii.gz"]), (".nrrd", ["seg.nrrd"]), (".nhdr", ["seg.nhdr", "seg.raw.gz"]),
    (".mha", ["seg.mha"]), (".mhd", ["seg.mhd", "seg.zraw"]), (".png", ["seg.png"]),
    (".tif", ["seg.json", "seg.tif"]),
])
def test_atomic_write_leaves_no_temporary_files(tmp_path: Path, ending: str, files: list[str]) -> None:
    geometry = ImageGeometry.default(2 if ending == ".png" else 3, (2.0, 1.0) if ending == ".png" else None)
    labels = np.ones((4, 5) if ending == ".png" else (3, 4, 5), np.uint8)
    write_segmentation(labels, geometry, tmp_path / "out" / f"seg{ending}")
    write_segmentation(labels * 2, geometry, tmp_path / "out" / f"seg{ending}")  # overwrite in place
    assert _listing(tmp_path / "out") == files
    assert read_segmentation(tmp_path / "out" / f"seg{ending}")[0].max() == 2


@pytest.mark.parametrize("ending", [".NII.GZ", ".Nii", ".nii.GZ", ".NRRD", ".NHDR", ".MHA", ".Mhd", ".TIF", ".PNG"])
def test_upper_case_endings(tmp_path: Path, ending: str) -> None:
    geometry = ImageGeometry.default(2 if ending == ".PNG" else 3, (1.0, 2.0) if ending == ".PNG" else (3.0, 2.0, 1.0))
    labels = np.arange(12).reshape((3, 4) if ending == ".PNG" else (1, 3, 4))
    write_segmentation(labels, geometry, tmp_path / f"seg{ending}")
    assert (tmp_path / f"seg{ending}").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    back, back_geometry = read_segmentation(tmp_path / f"seg{ending}")
    assert np.array_equal(back, labels)
    assert back_geometry.spacing == (geometry.spacing if ending != ".PNG" else (1.0, 1.0))


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(ImageIOError, match="cannot write image") as info:
        write_image(np.zeros((4, 5)), ImageGeometry.default(2), tmp_path / "flat.nii.gz")
    assert "flat.nii.gz" in str(info.value)
    assert _listing(tmp_path) == []


@pytest.mark.parametrize("name", ["img.jpg", "img.nii.bz2", "img"])
def test_unsupported_ending_names_the_file(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(b"x")
    with pytest.raises(ImageIOError, match="unsupported file ending") as info:
        read_image([tmp_path / name])
    assert name in str(info.value)
    with pytest.raises(ImageIOError, match="unsupported file ending"):
        write_image(np.zeros((2, 2)), ImageGeometry.default(2), tmp_path / f"out_{name}")


def _assert_one_line_naming(error: pytest.ExceptionInfo[ImageIOError], path: Path) -> None:
    text = str(error.value)
    assert str(path) in text and "\n" not in text and error.value.path == path
    assert "sitkImageReaderBase" not in text  # the library's source location is no reason


def test_truncated_nifti_gz(tmp_path: Path) -> None:
    nib.save(nib.Nifti1Image(_volume(), np.eye(4)), tmp_path / "full.nii.gz")
    content = (tmp_path / "full.nii.gz").read_bytes()
    assert len(gzip.decompress(content)) > 1000  # so that cutting the file cuts voxel data
    (tmp_path / "cut.nii.gz").write_bytes(content[: len(content) * 2 // 3])
    with pytest.raises(ImageIOError, match="cannot read image") as info:
        read_image([tmp_path / "cut.nii.gz"])
    _assert_one_line_naming(info, tmp_path / "cut.nii.gz")


@pytest.mark.parametrize("ending", ALL_ENDINGS)
def test_garbage_bytes(tmp_path: Path, ending: str) -> None:
    path = tmp_path / f"junk{ending}"
    path.write_bytes(np.random.default_rng(8).bytes(2000))
    with pytest.raises(ImageIOError, match="cannot read image") as info:
        read_image([path])
    _assert_one_line_naming(info, path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageIOError, match="file not found"):
        read_image([tmp_path / "absent.nii.gz"])
    with pytest.raises(ImageIOError, match="no image files"):
        read_image([])


def test_4d_nifti_is_refused(tmp_path: Path) -> None:
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6, 2), np.float32), np.eye(4)), tmp_path / "multi.nii.gz")
    with pytest.raises(ImageIOError, match="4D") as info:
        read_image([tmp_path / "multi.nii.gz"])
    assert "multi.nii.gz" in str(info.value) and "convert msd" in str(info.value)


def test_trailing_singleton_4th_axis_is_accepted(tmp_path: Path) -> None:
    nib.save(nib.Nifti1Image(np.ones((4, 5, 6, 1), np.float32), np.eye(4)), tmp_path / "one.nii.gz")
    assert read_image([tmp_path / "one.nii.gz"])[0].shape == (1, 6, 5, 4)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_image_is_refused(tmp_path: Path, bad: float) -> None:
    data = _volume()
    data[1, 2, 3] = bad
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "bad.nii.gz")
    with pytest.raises(ImageIOError, match="NaN or Inf") as info:
        read_image([tmp_path / "bad.nii.gz"])
    assert "bad.nii.gz" in str(info.value)


def test_channels_must_agree(tmp_path: Path) -> None:
    files = (("a", np.eye(4), SHAPE_XYZ), ("b", _diagonal((2, 1, 1), (0, 0, 0)), SHAPE_XYZ),
             ("c", np.eye(4), (3, 3, 3)))
    for name, affine, shape in files:
        nib.save(nib.Nifti1Image(np.zeros(shape, np.float32), affine), tmp_path / f"{name}.nii.gz")
    with pytest.raises(ImageIOError, match="geometry differs") as info:
        read_image([tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"])
    assert "b.nii.gz" in str(info.value)
    with pytest.raises(ImageIOError, match="shape"):
        read_image([tmp_path / "a.nii.gz", tmp_path / "c.nii.gz"])
    image, _ = read_image([tmp_path / "a.nii.gz", tmp_path / "a.nii.gz"])
    assert image.shape == (2, 5, 6, 7)


@pytest.mark.parametrize(("values", "nifti_dtype", "itk_pixel"), [
    ([0, 1, 255], np.uint8, sitk.sitkUInt8),
    ([0, 256], np.uint16, sitk.sitkUInt16),
    ([-1, 3], np.int16, sitk.sitkInt16),
    ([0, 70000], np.int32, sitk.sitkInt32),
])
def test_label_dtype_is_small(tmp_path: Path, values: list[int], nifti_dtype: type, itk_pixel: int) -> None:
    labels = np.zeros((3, 4, 5), np.int64)
    labels.flat[: len(values)] = values
    geometry = ImageGeometry.default(3)
    write_segmentation(labels, geometry, tmp_path / "seg.nii.gz")
    write_segmentation(labels, geometry, tmp_path / "seg.nrrd")
    assert nib.load(tmp_path / "seg.nii.gz").get_data_dtype() == nifti_dtype
    assert sitk.ReadImage(str(tmp_path / "seg.nrrd")).GetPixelID() == itk_pixel
    assert np.array_equal(read_segmentation(tmp_path / "seg.nii.gz")[0], labels)


@pytest.mark.parametrize("bad", [0.5, np.nan])
def test_segmentation_must_hold_integers(tmp_path: Path, bad: float) -> None:
    labels = np.ones((3, 4, 5))
    labels[0, 0, 0] = bad
    with pytest.raises(ImageIOError, match="non-integer") as info:
        write_segmentation(labels, ImageGeometry.default(3), tmp_path / "seg.nii.gz")
    assert info.value.path == tmp_path / "seg.nii.gz" and not list(tmp_path.iterdir())
    write_segmentation(np.ones((3, 4, 5)), ImageGeometry.default(3), tmp_path / "seg.nii.gz")  # 1.0 is fine
    assert nib.load(tmp_path / "seg.nii.gz").get_data_dtype() == np.uint8


def test_png_labels_above_255_use_16_bits(tmp_path: Path) -> None:
    labels = np.array([[0, 300], [2, 1]])
    write_segmentation(labels, ImageGeometry.default(2), tmp_path / "seg.png")
    native = np.asarray(Image.open(tmp_path / "seg.png"))
    assert native.dtype == np.uint16 and np.array_equal(native, labels)


@pytest.mark.parametrize("array", [np.array([[-1, 2]]), np.array([[0.5, 1.0]]), np.array([[0, 70000]])])
def test_png_refuses_values_it_cannot_store(tmp_path: Path, array: np.ndarray) -> None:
    with pytest.raises(ImageIOError, match="cannot write image"):
        write_image(array, ImageGeometry.default(2), tmp_path / "img.png")
    assert not (tmp_path / "img.png").exists()


def test_written_files_respect_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_segmentation(np.ones((3, 4, 5), np.uint8), ImageGeometry.default(3), tmp_path / "seg.tif")
    finally:
        os.umask(old)
    assert (tmp_path / "seg.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "seg.tif").stat().st_mode & 0o777 == 0o644
