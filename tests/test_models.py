"""The network follows the authors' released design: shapes, input scaling, non-negative weights,
init range."""

import numpy as np
import pytest
import torch

from etecrm_lib.models import INIT_RANGE, ETECRMNet, count_flops, scale_images
from etecrm_lib.training import ETECRMConfig


def test_released_design_shapes_and_layers():
    net = ETECRMConfig().build_network(n_voxels=7)
    convs = [m for m in net.features if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding) for c in convs] == [
        (1, 128, (3, 3), (2, 2), (1, 1)),
        (128, 128, (3, 3), (2, 2), (1, 1)),
        (128, 128, (3, 3), (2, 2), (1, 1)),
    ]
    assert sum(isinstance(m, torch.nn.ReLU) for m in net.features) == 3
    assert not any(
        isinstance(m, (torch.nn.BatchNorm2d, torch.nn.Dropout, torch.nn.MaxPool2d))
        for m in net.modules()
    )
    assert net.feature_shape == (128, 16, 16) and net.n_features == 32768
    assert net.weight.shape == (32768, 7) and net.bias.shape == (7,)
    assert net(torch.rand(2, 128, 128)).shape == (2, 7)


def test_regression_weights_start_in_range_and_squared_ones_are_non_negative():
    net = ETECRMNet(50, image_size=32, channels=4)
    for p in (net.weight, net.bias):
        assert (
            p.min() >= -INIT_RANGE
            and p.max() <= INIT_RANGE
            and p.min() < -INIT_RANGE / 2 < INIT_RANGE / 2 < p.max()
        )
    used = net.regression_weights()
    assert torch.equal(used, net.weight * net.weight) and (used >= 0).all()
    signed = ETECRMNet(5, image_size=32, channels=4, readout_weights="signed")
    assert (signed.regression_weights() < 0).any() and torch.equal(
        signed.regression_weights(), signed.weight
    )


def test_prediction_is_features_times_squared_weights_plus_bias():
    """A hand computation of the forward pass from its parts."""
    torch.manual_seed(0)
    net = ETECRMNet(3, image_size=16, channels=2, n_layers=2)
    images = torch.rand(4, 16, 16)
    x = scale_images(images.unsqueeze(1))
    for layer in net.features:
        x = layer(x)
    expected = x.flatten(1) @ (net.weight**2) + net.bias
    torch.testing.assert_close(net(images), expected)


def test_each_image_is_min_max_scaled_to_minus_half_plus_half():
    images = torch.stack(
        [
            torch.linspace(0.2, 0.6, 16).reshape(4, 4),
            torch.full((4, 4), 0.3),
            torch.linspace(-3, 5, 16).reshape(4, 4),
        ]
    )
    out = scale_images(images)
    assert (
        out[0].min() == -0.5
        and out[0].max() == 0.5
        and out[2].min() == -0.5
        and out[2].max() == 0.5
    )
    assert torch.equal(out[1], torch.zeros(4, 4))  # a constant image: all zeros
    # per image, not per batch: an image's scaled values do not depend on the others
    torch.testing.assert_close(scale_images(images[:1]), out[:1])
    # hand formula for one pixel
    assert float(out[0, 1, 2]) == pytest.approx(
        (float(images[0, 1, 2]) - 0.2) / 0.4 - 0.5, abs=1e-6
    )


def test_the_network_is_blind_to_image_contrast_and_brightness():
    """Min-max scaling makes a*image + b (a > 0) predict exactly as the image itself."""
    net = ETECRMNet(4, image_size=32, channels=4)
    images = torch.rand(3, 32, 32)
    torch.testing.assert_close(net(images), net(0.25 * images + 0.6), atol=1e-5, rtol=1e-5)


def test_count_flops_by_hand():
    net = ETECRMNet(10, image_size=128)
    convs = 2 * 64 * 64 * 128 * 1 * 9 + 2 * 32 * 32 * 128 * 128 * 9 + 2 * 16 * 16 * 128 * 128 * 9
    assert count_flops(net) == convs + 2 * 32768 * 10


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="divisible by 2\\*\\*3"):
        ETECRMNet(3, image_size=100)
    with pytest.raises(ValueError, match="at least one voxel"):
        ETECRMNet(0)
    with pytest.raises(ValueError, match="readout_weights must be one of"):
        ETECRMNet(3, readout_weights="positive")
    np.testing.assert_equal(
        ETECRMNet(2, image_size=8, channels=1, n_layers=3).feature_shape, (1, 1, 1)
    )
