from __future__ import annotations

from autounet.planning.topology import plan_topology


def test_isotropic_128_cube_pools_five_times() -> None:
    topology = plan_topology((1.0, 1.0, 1.0), (128, 128, 128))
    assert topology.num_stages == 6
    assert topology.strides[0] == (1, 1, 1)
    assert all(s == (2, 2, 2) for s in topology.strides[1:])
    assert topology.kernel_sizes == ((3, 3, 3),) * 6
    assert topology.divisor == (32, 32, 32)
    assert topology.patch_size == (128, 128, 128)


def test_anisotropic_axis_waits_until_in_plane_catches_up() -> None:
    # 5 mm slices vs 1.25 mm in-plane: z is not pooled (kernel 1) until in-plane spacing reaches 2.5 mm+.
    topology = plan_topology((5.0, 1.25, 1.25), (20, 160, 160))
    assert topology.strides[1] == (1, 2, 2)
    assert topology.strides[2] == (1, 2, 2)
    assert topology.strides[3] == (2, 2, 2)
    assert topology.kernel_sizes[0] == (1, 3, 3)
    assert topology.kernel_sizes[1] == (1, 3, 3)
    assert topology.kernel_sizes[2] == (3, 3, 3)


def test_patch_is_padded_to_total_stride() -> None:
    topology = plan_topology((1.0, 1.0), (100.0, 75.4))
    assert all(p % d == 0 for p, d in zip(topology.patch_size, topology.divisor, strict=True))
    assert topology.patch_size[0] >= 100 and topology.patch_size[1] >= 75


def test_single_axis_needs_three_times_min_edge() -> None:
    # Only x can still pool (size 10 < 12): it stops.
    topology = plan_topology((1.0, 1.0), (4, 10))
    assert topology.num_stages == 1
