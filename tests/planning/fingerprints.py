"""Hand-written fingerprints of typical dataset geometries, shared by the planning tests."""

from __future__ import annotations

import numpy as np

from autounet.dataset.description import DatasetDescription
from autounet.fingerprint import ChannelIntensityStats, Fingerprint

CT_STATS = ChannelIntensityStats(mean=99.4, median=102.0, std=38.1, min=-1024.0, max=3071.0,
                                 percentile_00_5=-17.0, percentile_99_5=201.0)
MR_STATS = ChannelIntensityStats(mean=420.0, median=400.0, std=120.0, min=0.0, max=2000.0,
                                 percentile_00_5=80.0, percentile_99_5=900.0)


def make_fingerprint(spacings: list[tuple[float, ...]], shapes: list[tuple[int, ...]], channels: int = 1,
                     relative_size: float = 1.0, stats: ChannelIntensityStats = MR_STATS) -> Fingerprint:
    """A fingerprint with the given per-case spacings and shapes (after crop)."""
    return Fingerprint(
        schema_version=1, ndim=len(spacings[0]), case_ids=tuple(f"case_{i:03d}" for i in range(len(spacings))),
        spacings=tuple(tuple(float(v) for v in s) for s in spacings),
        shapes_before_crop=tuple(tuple(int(v) for v in s) for s in shapes),
        shapes_after_crop=tuple(tuple(int(v) for v in s) for s in shapes),
        relative_sizes_after_crop=(relative_size,) * len(spacings), foreground_intensity=(stats,) * channels)


def jittered(spacing: tuple[float, ...], shape: tuple[int, ...], n: int, seed: int = 0,
             spacing_jitter: float = 0.1, shape_jitter: float = 0.15) -> tuple[list, list]:
    """``n`` cases around a typical spacing and shape, deterministic."""
    rng = np.random.default_rng(seed)
    spacings = [tuple(s * (1 + rng.uniform(-spacing_jitter, spacing_jitter)) for s in spacing) for _ in range(n)]
    shapes = [tuple(max(1, int(v * (1 + rng.uniform(-shape_jitter, shape_jitter)))) for v in shape) for _ in range(n)]
    return spacings, shapes


def description(channels: tuple[str, ...] = ("MR",), num_labels: int = 2, n: int = 20,
                ending: str = ".nii.gz") -> DatasetDescription:
    """A dataset.json with the given channels and ``num_labels`` foreground labels."""
    labels: dict[str, int | tuple[int, ...]] = {"background": 0}
    labels.update({f"label_{i}": i for i in range(1, num_labels + 1)})
    return DatasetDescription(channel_names=dict(enumerate(channels)), labels=labels, num_training=n,
                              file_ending=ending)


# Geometry cases: name -> (fingerprint, description).
def cases() -> dict[str, tuple[Fingerprint, DatasetDescription]]:
    """The named geometries the planner tests run on."""
    iso = jittered((1.0, 1.0, 1.0), (128, 128, 128), 20, seed=1)
    aniso = jittered((10.0, 1.56, 1.56), (9, 237, 208), 100, seed=2, spacing_jitter=0.05)
    tiny = jittered((1.0, 1.0, 1.0), (36, 50, 35), 260, seed=3)
    large_ct = jittered((1.0, 0.77, 0.77), (432, 512, 512), 130, seed=4)
    multi = jittered((3.6, 0.62, 0.62), (20, 320, 319), 32, seed=5)
    two_d = jittered((1.0, 1.0), (512, 512), 40, seed=6, spacing_jitter=0.0)
    return {
        "isotropic": (make_fingerprint(*iso), description()),
        "anisotropic": (make_fingerprint(*aniso), description(num_labels=3, n=100)),
        "tiny": (make_fingerprint(*tiny), description(num_labels=2, n=260)),
        "large_ct": (make_fingerprint(*large_ct, stats=CT_STATS), description(("CT",), 2, 130)),
        "multichannel": (make_fingerprint(*multi, channels=2, relative_size=0.6), description(("T2", "ADC"), 2, 32)),
        "two_d": (make_fingerprint(*two_d), description(("rgb_to_0_1",), 1, 40, ".png")),
    }
