"""Rotation, scaling and elastic deformation composed into one sampling grid per sample, for a whole batch.

The grid maps every voxel of the final patch (centred) into the larger sampled patch:
``x_in = centre_in + A @ (x_out - centre_out + d(x_out))`` in voxel units, with ``A = R @ s`` (rotation
``Rz @ Ry @ Rx`` about axes 2, 1, 0 in 3D, the in-plane rotation in 2D, times the isotropic zoom ``s``) and
``d`` the optional smoothed elastic displacement. ``centre_in`` is the centre of the plain centre crop, so
an untransformed sample and a transformed one with ``A = I`` cover the same voxels. Samples drawn without any
spatial transform are centre-cropped by slicing (bit-identical and cheaper than interpolating); the others go
through one grid (built like ``F.affine_grid``, by broadcasting, which is about 9x faster on the CPU, plus the
elastic displacement) and one ``grid_sample`` call for the image and one for the segmentation.

Interpolation: images linear (bilinear / trilinear) with zero padding, as batchgeneratorsv2's
``SpatialTransform`` in nnU-Net v2. Segmentations as nnU-Net too by default: each label's indicator is
resampled linearly and every voxel takes the label with the largest value (first label on ties); voxels that
map outside the sampled patch get ``seg_padding_value``. It is computed from each output voxel's ``2**k``
neighbours rather than by resampling one indicator per label, which costs about as much as resampling the
image; with ``seg_linear_interpolation=False`` labels are resampled nearest-neighbour in one call (more jagged
boundaries, which measurably slowed learning of small structures on the example data).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812  # the conventional alias

from autounet.data.augmentation.config import AugmentationConfig
from autounet.data.augmentation.params import AugmentationParameters, spatial_transform_axes

__all__ = ["centre_crop_slices", "spatial_transform"]

# Label runs up to this length are scored as a whole run (see _candidate_labels); longer ones use the labels present.
_MAX_LABEL_RUN = 16


def centre_crop_slices(sampling_patch_size: tuple[int, ...], patch_size: tuple[int, ...]) -> tuple[slice, ...]:
    """Slices of the spatial axes that cut the centred final patch out of the sampled patch.

    The crop starts at ``(sampling - patch) // 2``; with an odd difference the extra voxel lies after it.
    """
    return tuple(slice((s - p) // 2, (s - p) // 2 + p) for s, p in zip(sampling_patch_size, patch_size, strict=True))


def spatial_transform(image: torch.Tensor, seg: torch.Tensor, params: AugmentationParameters,
                      config: AugmentationConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop (and for the drawn samples resample) the sampled patches to the final patch size.

    Args:
        image: ``(B, C, *sampling_patch_size)`` floating point.
        seg: ``(B, S, *sampling_patch_size)`` integer labels (S label channels, e.g. a cascade's previous stage).
        params: The batch's parameters.
        config: Augmentation settings.

    Returns:
        New tensors ``(B, C, *patch_size)`` and ``(B, S, *patch_size)``, same dtypes and device as the inputs.
    """
    crop = (slice(None), slice(None), *centre_crop_slices(config.sampling_patch_size, config.patch_size))
    image_out = image.new_empty((image.shape[0], image.shape[1], *config.patch_size))
    seg_out = seg.new_empty((seg.shape[0], seg.shape[1], *config.patch_size))
    # copy the crop only where no resampled result will overwrite it, one slice per run of such samples
    for start, stop in _runs(~params.do_spatial):
        image_out[start:stop] = image[start:stop][crop]
        seg_out[start:stop] = seg[start:stop][crop]
    chosen = params.do_spatial.nonzero().flatten()
    if chosen.numel() == 0:
        return image_out, seg_out
    index = chosen.to(image.device)
    sub_image, sub_seg = _rows(image, chosen, index), _rows(seg, chosen, index)
    if config.dummy_2d:
        # In-plane only: fold axis 0 into the channels (nnU-Net's Convert3DTo2D) so a 2D grid keeps every
        # slice exactly in its plane and the interpolation is bilinear, not trilinear.
        first = crop[2]
        sub_image = sub_image[:, :, first].flatten(1, 2)
        sub_seg = sub_seg[:, :, first].flatten(1, 2)
    grid = sampling_grid(params, chosen, config, image.device, image.dtype)
    warped = F.grid_sample(sub_image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if config.seg_linear_interpolation:
        warped_seg = _warp_labels_linear(sub_seg, grid, config.seg_padding_value)
    else:
        # grid_sample pads with zeros only; shifting the labels by the padding value makes the padding that
        # label. Labels are small integers, exact in floating point, and nearest sampling only copies them.
        shift = float(config.seg_padding_value)
        # convert, then shift in place: int16 - float in one op takes a mixed-dtype path ~6x slower on the CPU
        warped_seg = F.grid_sample(sub_seg.to(grid.dtype).sub_(shift), grid, mode="nearest", padding_mode="zeros",
                                   align_corners=False)
        warped_seg = warped_seg.add_(shift).to(seg.dtype)
    image_out.index_copy_(0, index, warped.reshape(-1, *image_out.shape[1:]))
    seg_out.index_copy_(0, index, warped_seg.reshape(-1, *seg_out.shape[1:]))
    return image_out, seg_out


def _warp_labels_linear(seg: torch.Tensor, grid: torch.Tensor, padding_value: int) -> torch.Tensor:
    """Per label: resample its indicator linearly; keep the label with the largest value (first on ties).

    Equivalent to ``grid_sample`` (linear, zero padding, ``align_corners=False``) of every label's indicator
    followed by an argmax, but computed from the ``2**k`` neighbours of each output voxel: each neighbour's
    interpolation weight is added to the score of its label, and only for voxels whose neighbours disagree
    (elsewhere their common label wins). The work scales with the output patch, not with the (larger) sampled
    patch times the number of labels, which made the indicator version several times slower than resampling
    the image. Voxels whose every neighbour lies outside the sampled patch get ``padding_value``.
    """
    n, channels = seg.shape[:2]
    in_size = seg.shape[2:]
    k = len(in_size)
    out_size = grid.shape[1:-1]
    points = math.prod(out_size)
    floors, uppers = [], []  # per axis: lower neighbour index, and the upper neighbour's weight
    for axis, size in enumerate(in_size):
        # grid_sample's unnormalisation, ((g + 1) * size - 1) / 2; the first step reads the strided grid
        # component into a new contiguous tensor (3x faster than transposing the whole grid first)
        coordinate = (grid[..., k - 1 - axis] + 1).view(n, points).mul_(size).sub_(1).div_(2)
        coordinate = coordinate.clamp_(-1, size)  # beyond, every neighbour is outside anyway
        floor = coordinate.floor()
        upper = coordinate.sub_(floor)
        floors.append(floor)  # integer-valued floats: the index arithmetic below stays in float32 (exact)
        uppers.append(upper)
    # Only the box holding every neighbour inside the patch is read (rotated or zoomed-in grids leave much of
    # the sampled patch untouched).
    low = [max(int(floor.min()), 0) for floor in floors]
    high = [min(int(floor.max()) + 1, size - 1) for floor, size in zip(floors, in_size, strict=True)]
    if any(lo > hi for lo, hi in zip(low, high, strict=True)):
        return seg.new_full((n, channels, *out_size), padding_value)
    region = seg[(slice(None), slice(None), *(slice(lo, hi + 1) for lo, hi in zip(low, high, strict=True)))]
    region_size = region.shape[2:]
    labels, run_start = _candidate_labels(region)
    outside = len(labels)  # an extra score slot for neighbours outside the patch, dropped at the end
    # Framed by "outside" so that the neighbours of every lower index clamped to [-1, size] have valid positions.
    framed = _label_frame(region, labels, run_start)
    strides = [math.prod(s + 3 for s in region_size[axis + 1:]) for axis in range(k)]
    # float32 holds every frame index exactly below 2**24; larger frames compute it in float64
    base_dtype = torch.float32 if framed.shape[2] < 2**24 else torch.float64
    base_float = torch.zeros((n, points), dtype=base_dtype, device=seg.device)
    for axis, floor in enumerate(floors):
        # past the box along an axis means outside the patch, whose frame voxels say so
        base_float.add_((floor - low[axis]).clamp_(-1, region_size[axis]).add_(1).mul_(strides[axis]))
    base = base_float.long()[:, None, :].expand(n, channels, points)
    # label positions of each corner neighbour, stacked: (2**k, n, channels, points)
    neighbours = torch.empty((2 ** k, n, channels, points), dtype=framed.dtype, device=seg.device)
    for corner in range(2 ** k):
        offset = sum(bit * stride for bit, stride in zip(_corner_bits(corner, k), strides, strict=True))
        # gathering at base from a view shifted by the offset spares adding it to every index
        torch.gather(framed[:, :, offset:], 2, base, out=neighbours[corner])
    least, most = neighbours.amin(dim=0), neighbours.amax(dim=0)
    # Where every neighbour holds the same label (most of a patch) that label wins, and where every neighbour is
    # outside the voxel is padding; only the remaining (boundary) voxels need the weighted scores.
    index = least.long().view(-1)
    mixed = (least != most).view(-1).nonzero().squeeze(1)
    if mixed.numel():
        # (index_select on flat views: several times faster than advanced indexing on the CPU)
        at_point = (mixed // (channels * points)) * points + mixed % points
        # lower and upper neighbour weights per axis, only where they are needed
        mixed_weights = [(1 - w, w) for w in (u.reshape(-1).index_select(0, at_point) for u in uppers)]
        corner_weights = torch.empty((mixed.numel(), 2 ** k), dtype=grid.dtype, device=grid.device)
        for corner in range(2 ** k):
            bits = _corner_bits(corner, k)
            weight = mixed_weights[0][bits[0]]
            for axis in range(1, k):
                weight = weight * mixed_weights[axis][bits[axis]]
            corner_weights[:, corner] = weight
        # every corner's weight onto its label's score in one scatter, in corner order as grid_sample sums
        corner_labels = neighbours.view(2 ** k, -1).index_select(1, mixed).t().long()
        scores = torch.zeros((mixed.numel(), outside + 1), dtype=grid.dtype, device=grid.device)
        scores.scatter_add_(1, corner_labels, corner_weights)
        winner, best = _first_argmax(scores[:, :outside])
        index.index_copy_(0, mixed, winner.masked_fill_(best <= 0, outside))
    values = torch.cat([labels.to(seg.dtype), torch.tensor([padding_value], dtype=seg.dtype, device=seg.device)])
    return values.index_select(0, index).view(n, channels, *out_size)


def _corner_bits(corner: int, k: int) -> list[int]:
    """Offsets (0 or 1) along each of the ``k`` axes of neighbour ``corner`` (first axis most significant)."""
    return [(corner >> (k - 1 - axis)) & 1 for axis in range(k)]


def _first_argmax(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index and value of the maximum of each row of ``(r, m)`` scores, the first index on ties.

    ``max(dim=1)`` / ``argmax`` over a short axis run a slow scalar loop on the CPU (~20x ``amax``). Instead
    the positions holding the maximum are summed as bits, ``2**(m-1-i)``, exactly in float32 for m <= 24, and
    the highest set bit (from ``frexp``) is the first of them.
    """
    m = scores.shape[1]
    if m > 24:
        values, index = scores.max(dim=1)
        return index, values
    best = scores.amax(dim=1, keepdim=True)
    bits = torch.tensor([2.0 ** (m - 1 - i) for i in range(m)], dtype=scores.dtype, device=scores.device)
    code = ((scores == best) * bits).sum(dim=1)
    _, exponent = torch.frexp(code)  # code = mantissa * 2**exponent, mantissa in [0.5, 1)
    return m - exponent.long(), best[:, 0]


def _candidate_labels(seg: torch.Tensor) -> tuple[torch.Tensor, int | None]:
    """The candidate labels of ``seg`` (ascending), and their first value when they are a run of integers.

    Labels are usually a short run of small integers (padding -1, background 0, foreground 1..K): then the
    candidates are that whole run, found with two reductions instead of a sort of every voxel (``unique``);
    a label of the run that does not occur only ever scores 0, which never wins inside the patch. Otherwise
    the labels present, and ``None``.
    """
    low, high = int(seg.amin()), int(seg.amax())
    if high - low < _MAX_LABEL_RUN:
        return torch.arange(low, high + 1, device=seg.device), low
    return torch.unique(seg).long(), None


def _label_frame(region: torch.Tensor, labels: torch.Tensor, run_start: int | None) -> torch.Tensor:
    """Positions in ``labels`` of the voxels of ``region`` ``(n, c, *box)``, framed by one voxel of the value
    ``len(labels)`` ("outside") before and two after each spatial axis; returned flat, ``(n, c, frame voxels)``.

    uint8 while the labels fit: a small frame stays in cache, which makes the gathers several times faster.
    """
    outside = len(labels)
    shape = (*region.shape[:2], *(s + 3 for s in region.shape[2:]))
    interior = (slice(None), slice(None), *(slice(1, s + 1) for s in region.shape[2:]))
    if run_start is not None:
        # Everything modulo 256: the copy wraps each label value v to v mod 256, the final add makes it
        # (v - run_start) mod 256, its position in the run; the frame value is chosen to end up as "outside".
        framed = torch.full(shape, (outside + run_start) % 256, dtype=torch.uint8, device=region.device)
        framed[interior] = region
        if run_start % 256:
            framed.add_(-run_start % 256)
        return framed.view(*shape[:2], -1)
    framed = torch.full(shape, outside, dtype=torch.int32, device=region.device)
    framed[interior] = torch.searchsorted(labels, region.long())
    return framed.view(*shape[:2], -1)


def _runs(mask: torch.Tensor) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges of consecutive true entries of a 1D CPU mask."""
    runs: list[tuple[int, int]] = []
    for position, flag in enumerate(mask.tolist()):
        if flag and runs and runs[-1][1] == position:
            runs[-1] = (runs[-1][0], position + 1)
        elif flag:
            runs.append((position, position + 1))
    return runs


def _rows(tensor: torch.Tensor, chosen: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The chosen samples: a view when they are consecutive (no copy of the large sampled patches)."""
    first, last = int(chosen[0]), int(chosen[-1])
    if last - first + 1 == chosen.numel():
        return tensor[first:last + 1]
    return tensor.index_select(0, index)


def _rotation_matrices(angles: torch.Tensor, three_d: bool) -> torch.Tensor:
    """``(n, k, k)`` rotations in array axis order; ``angles`` is ``(n, 3)`` (about axes 0, 1, 2) or ``(n,)``."""
    if not three_d:
        cos, sin = torch.cos(angles), torch.sin(angles)
        return torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    n = angles.shape[0]
    matrices = []
    # Each rotation turns the plane of the two other axes; batchgeneratorsv2's sign convention.
    for axis, (i, j, sign) in enumerate(((1, 2, 1.0), (0, 2, -1.0), (0, 1, 1.0))):
        cos, sin = torch.cos(angles[:, axis]), torch.sin(angles[:, axis])
        matrix = torch.eye(3, dtype=angles.dtype).repeat(n, 1, 1)
        matrix[:, i, i], matrix[:, j, j] = cos, cos
        matrix[:, i, j], matrix[:, j, i] = -sign * sin, sign * sin
        matrices.append(matrix)
    return matrices[2] @ matrices[1] @ matrices[0]


def sampling_grid(params: AugmentationParameters, chosen: torch.Tensor, config: AugmentationConfig,
                  device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``grid_sample`` grid of the chosen samples: ``(n, *P, k)``, last axis in grid order (x first).

    Args:
        params: The batch's parameters.
        chosen: ``(n,)`` CPU indices of the samples to resample.
        config: Augmentation settings.
        device: Device of the images.
        dtype: Floating dtype of the grid.

    Returns:
        Normalised coordinates (``align_corners=False``) over the spatial-transform axes (the in-plane axes
        under dummy 2D).
    """
    axes = spatial_transform_axes(config)
    out_size = [config.patch_size[a] for a in axes]
    in_size = [config.sampling_patch_size[a] for a in axes]
    three_d = len(axes) == 3
    angles = params.rotation_angles[chosen]
    angles = torch.where(params.do_rotation[chosen, None], angles, torch.zeros_like(angles))
    scale = torch.where(params.do_scaling[chosen], params.scaling_factor[chosen], torch.ones_like(angles[:, 0]))
    linear = _rotation_matrices(angles if three_d else angles[:, 0], three_d) * scale[:, None, None]
    half_in = torch.tensor([s / 2 for s in in_size], dtype=torch.float64)
    half_out = torch.tensor([p / 2 for p in out_size], dtype=torch.float64)
    # Offset of the crop centre from the sampled patch's centre: 0 or -1/2 voxel per axis.
    shift = torch.tensor([(s - p) // 2 + (p - 1) / 2 - (s - 1) / 2 for s, p in zip(in_size, out_size, strict=True)],
                         dtype=torch.float64)
    # normalised_in = (linear @ (normalised_out * half_out) + shift) / half_in, in array axis order
    to_input = linear / half_in[:, None]
    theta = torch.cat([to_input * half_out[None, :], (shift / half_in).expand(len(chosen), -1)[..., None]], dim=2)
    grid = _affine_grid(theta.to(device=device, dtype=dtype), out_size)
    elastic = params.do_elastic[chosen].nonzero().flatten()
    if elastic.numel() > 0:
        displacement = elastic_displacement(params, chosen[elastic], out_size, device, dtype)
        # the displacement is added before the linear map, so it rotates and zooms with the patch
        moved = torch.einsum("nij,nj...->n...i", to_input[elastic].to(device=device, dtype=dtype), displacement)
        grid.index_add_(0, elastic.to(device), moved.flip(-1))
    return grid


def _affine_grid(theta: torch.Tensor, size: list[int]) -> torch.Tensor:
    """``F.affine_grid(..., align_corners=False)`` for ``theta`` in array axis order, built by broadcasting.

    Args:
        theta: ``(n, k, k + 1)``; row ``i`` gives normalised input coordinate ``i`` (array order) from the
            normalised output coordinates and a constant.
        size: Output spatial size ``P`` (``k`` entries).

    Returns:
        ``(n, *P, k)`` grid, last axis in grid order (x first). Same values as ``F.affine_grid`` up to float
        rounding, several times faster on the CPU, where ``affine_grid`` runs a batched matrix product over
        every voxel.
    """
    n, k = theta.shape[0], len(size)
    # normalised voxel centres of the output, align_corners=False
    centres = [(torch.arange(p, device=theta.device, dtype=theta.dtype) * 2 + 1) / p - 1 for p in size]
    grid = torch.empty((n, *size, k), device=theta.device, dtype=theta.dtype)
    for row in range(k):
        total = theta[:, row, k].reshape(n, *([1] * k))
        for axis in range(k):
            view = [n] + [1] * k
            view[1 + axis] = size[axis]
            total = total + (theta[:, row, axis, None] * centres[axis][None, :]).reshape(view)
        grid[..., k - 1 - row] = total
    return grid


def elastic_displacement(params: AugmentationParameters, samples: torch.Tensor, size: list[int],
                         device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Smoothed random displacement fields in voxels, ``(n, k, *size)``, component ``i`` along axis ``i``.

    White noise is smoothed with a Gaussian in Fourier space (periodic, as batchgeneratorsv2 does), scaled so
    each component's largest magnitude equals its ``elastic_alpha`` and centred to zero mean, so the
    deformation does not shift the patch as a whole.
    """
    n, k = len(samples), len(size)
    generator = torch.Generator(device=device)
    generator.manual_seed(params.elastic_seed)
    noise = torch.randn((n, k, *size), generator=generator, device=device, dtype=torch.float32)
    spatial = tuple(range(2, 2 + k))
    spectrum = torch.fft.rfftn(noise, dim=spatial)
    freq_sq = torch.zeros(spectrum.shape[2:], device=device)
    for axis, length in enumerate(size):
        freq = torch.fft.rfftfreq(length, device=device) if axis == k - 1 else torch.fft.fftfreq(length, device=device)
        view = [1] * k
        view[axis] = -1
        freq_sq = freq_sq + freq.reshape(view) ** 2
    sigma = params.elastic_sigma[samples].to(device=device, dtype=torch.float32).reshape(n, k, *([1] * k))
    spectrum = spectrum * torch.exp(-2 * math.pi**2 * sigma**2 * freq_sq)
    field = torch.fft.irfftn(spectrum, s=size, dim=spatial)
    field = field - field.mean(dim=spatial, keepdim=True)
    peak = field.abs().amax(dim=spatial, keepdim=True).clamp_min(1e-8)
    alpha = params.elastic_alpha[samples].to(device=device, dtype=torch.float32).reshape(n, k, *([1] * k))
    return (field * (alpha / peak)).to(dtype)
