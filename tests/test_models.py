"""The ETECRM network: shapes, readouts against direct computations, explicit randomness, clear errors."""

import numpy as np
import pytest
import torch

from etecrm_lib.models import ETECRMNet, count_flops
from etecrm_lib.training import ETECRMConfig


@pytest.mark.parametrize("readout", ["dense", "factorized"])
@pytest.mark.parametrize("size,channels", [(64, (4, 8, 8, 8)), (128, (4, 8, 8, 8)), (32, (4, 8))])
def test_output_shape_and_feature_map(readout, size, channels):
    net = ETECRMNet(n_voxels=11, image_size=size, channels=channels, readout=readout)
    side = size // 2 ** len(channels)
    assert net.feature_shape == (channels[-1], side, side) and net.n_features == channels[-1] * side * side
    images = torch.rand(3, size, size)
    out = net(images)
    assert out.shape == (3, 11) and torch.isfinite(out).all()
    torch.testing.assert_close(out, net(images.unsqueeze(1)))          # (B, H, W) and (B, 1, H, W) agree


def test_dense_readout_is_a_linear_map_of_the_flattened_features():
    net = ETECRMNet(5, 32, (4, 8))
    x = torch.rand(6, 32, 32)
    feats = net.features(x.unsqueeze(1) - 0.5).flatten(1)
    expected = feats @ net.readout.weight.T + net.readout.bias
    torch.testing.assert_close(net(x), expected)


def test_factorized_readout_matches_a_direct_sum():
    torch.manual_seed(0)
    net = ETECRMNet(3, 32, (4, 8), readout="factorized")
    with torch.no_grad():
        net.readout.bias.copy_(torch.randn(3))
    x = torch.rand(2, 32, 32)
    f = net.features(x.unsqueeze(1) - 0.5).detach().numpy().reshape(2, 8, -1)     # (B, C, S)
    m, w, b = (t.detach().numpy() for t in (net.readout.spatial, net.readout.feature, net.readout.bias))
    expected = np.zeros((2, 3))
    for i in range(2):
        for v in range(3):
            expected[i, v] = sum(f[i, c, s] * m[v, s] * w[v, c] for c in range(8) for s in range(f.shape[2])) + b[v]
    np.testing.assert_allclose(net(x).detach().numpy(), expected, rtol=1e-4, atol=1e-6)
    # V * (S + C) + V parameters instead of V * C * S + V
    assert sum(p.numel() for p in net.readout.parameters()) == 3 * (64 + 8) + 3


def test_randomness_is_explicit():
    net = ETECRMNet(4, 32, (4, 8))
    x = torch.rand(5, 32, 32)
    torch.testing.assert_close(net(x), net(x))                        # no hidden random draws
    noise = 0.1 * torch.randn(5, 1, 32, 32)
    torch.testing.assert_close(net(x, input_noise=noise), net(x.unsqueeze(1) + noise))
    torch.testing.assert_close(net(x, feature_mask=torch.ones(5, net.n_features)), net(x))
    zero = net(x, feature_mask=torch.zeros(5, net.n_features))
    torch.testing.assert_close(zero, net.readout.bias.expand(5, 4))   # all features dropped: only the bias is left


def test_build_network_is_seeded_and_leaves_the_global_rng_alone():
    cfg = ETECRMConfig.for_profile("quick")
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, b = cfg.build_network(7, seed=1), cfg.build_network(7, seed=1)
    assert torch.rand(1) == before
    c = cfg.build_network(7, seed=2)
    for (name, p), q, r in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(p, q), name
    assert not torch.equal(a.features[0].weight, c.features[0].weight)


def test_count_flops_by_hand():
    net = ETECRMNet(10, 32, (4, 8), first_kernel=5)
    conv1 = 2 * 16 * 16 * 4 * 1 * 25
    conv2 = 2 * 8 * 8 * 8 * 4 * 9
    readout = 2 * (8 * 8 * 8) * 10
    assert count_flops(net) == conv1 + conv2 + readout


def test_bad_architecture_gets_a_clear_error():
    with pytest.raises(ValueError, match="divisible by 2\\*\\*4"):
        ETECRMNet(5, 100, (4, 8, 8, 8))
    with pytest.raises(ValueError, match="readout must be one of"):
        ETECRMNet(5, 32, (4, 8), readout="gaussian")
    with pytest.raises(ValueError, match="at least one voxel"):
        ETECRMNet(0, 32, (4, 8))
    with pytest.raises(ValueError, match="odd"):
        ETECRMNet(5, 32, (4, 8), first_kernel=4)
