"""Normalisation schemes and their registry."""

from __future__ import annotations

import numpy as np
import pytest

from autounet.errors import ConfigError
from autounet.planning.plans import ChannelNormalization
from autounet.preprocessing import available_normalizers, get_normalizer, normalize, register_normalizer


def _image() -> np.ndarray:
    return np.random.default_rng(0).normal(50.0, 20.0, size=(1, 6, 7, 8)).astype(np.float32)


@pytest.mark.parametrize("name", available_normalizers())
def test_every_scheme_keeps_shape_and_dtype(name: str) -> None:
    spec = ChannelNormalization(name, clip_min=0.0, clip_max=80.0, mean=40.0, std=10.0)
    data = _image()
    out = normalize(data, None, (spec,))
    assert out is data and out.dtype == np.float32 and np.isfinite(out).all()


def test_ct_clips_then_standardises() -> None:
    data = np.array([[-100.0, 0.0, 50.0, 1000.0]], dtype=np.float32)
    spec = ChannelNormalization("ct", clip_min=-10.0, clip_max=100.0, mean=20.0, std=10.0)
    np.testing.assert_allclose(normalize(data, None, (spec,))[0], [-3.0, -2.0, 3.0, 8.0])


def test_ct_without_statistics_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="channel 0.*clip_min"):
        normalize(_image(), None, (ChannelNormalization("ct"),))


def test_zscore_whole_image() -> None:
    out = normalize(_image(), None, (ChannelNormalization("zscore"),))
    assert out.mean() == pytest.approx(0.0, abs=1e-5) and out.std() == pytest.approx(1.0, abs=1e-4)


def test_zscore_inside_mask_only() -> None:
    data = _image()
    mask = np.zeros(data.shape[1:], dtype=bool)
    mask[1:5, 2:6, 1:7] = True
    data[0][~mask] = 0.0
    out = normalize(data, mask, (ChannelNormalization("zscore", use_nonzero_mask=True),))
    assert out[0][mask].mean() == pytest.approx(0.0, abs=1e-5)
    assert out[0][mask].std() == pytest.approx(1.0, abs=1e-4)
    assert np.all(out[0][~mask] == 0.0)


def test_rescale_and_none() -> None:
    out = normalize(_image(), None, (ChannelNormalization("rescale_0_1"),))
    assert out.min() == pytest.approx(0.0) and out.max() == pytest.approx(1.0)
    data = _image()
    np.testing.assert_array_equal(normalize(data.copy(), None, (ChannelNormalization("none"),)), data)


def test_registry_rejects_duplicates_and_suggests_names() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_normalizer("zscore")(lambda image, mask, spec: image)
    with pytest.raises(ConfigError, match="did you mean 'zscore'"):
        get_normalizer("zscor")


def test_channel_count_must_match() -> None:
    with pytest.raises(ConfigError, match="2 channel"):
        normalize(_image(), None, (ChannelNormalization("none"),) * 2)


def test_rgb_to_0_1_uses_a_fixed_scale() -> None:
    data = np.array([[0.0, 51.0, 255.0]], dtype=np.float32)
    np.testing.assert_allclose(normalize(data, None, (ChannelNormalization("rgb_to_0_1"),))[0], [0.0, 0.2, 1.0])
