"""The batched trainer: a model trained in a group is the model trained alone by ``fit_etecrm``
(weights, chosen epoch, history), a group too large for its memory budget is split and gives the
same models, and the memory estimate covers what the group really holds."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from etecrm_lib import batched, stacked
from etecrm_lib.batched import Member, estimate_memory, fit_group, plan_groups
from etecrm_lib.training import ETECRMConfig, fit_etecrm

TINY = ETECRMConfig(image_size=32, channels=4, epochs=3, batch_size=16, selection_voxels=6)
TOLERANCE = 1e-5  # relative difference of weights: float32 sums in another order, a few steps
# The read-out offset ``bias`` under a correlation loss: r ignores offsets, so its gradient is only
# the tiny mean penalty plus rounding residue of a sum that cancels, and Adam, which divides by the
# gradient's size, turns a rounding difference of 1e-9 into steps of the learning rate. Measured:
# 8e-4 after 3 epochs without noise, every other tensor below 1e-7. Predictions' r does not change.
BIAS_TOLERANCE = 1e-2


def _arrays(n=80, size=32, n_vox=12, seed=0):
    """Images and responses with some signal: each voxel a noisy linear read-out of patches."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(size=(n, size, size)).astype(np.float32)
    patches = images.reshape(n, 4, size // 4, 4, size // 4).mean(axis=(2, 4)).reshape(n, 16)
    responses = patches @ rng.normal(size=(16, n_vox)) + 0.1 * rng.normal(size=(n, n_vox))
    return images, responses.astype(np.float32)


def _members():
    """Seeds and variants of one ROI, and a second ROI with other voxels, in a mixed order."""
    images, v1 = _arrays()
    _, v4 = _arrays(n_vox=7, seed=1)
    return images, [
        Member(v1, TINY, 0),
        Member(v1, replace(TINY, loss="mse", noise_std=0.0), 1),
        Member(v4, TINY, 2),
        Member(v1, replace(TINY, readout_weights="signed"), 3),
        Member(v1, replace(TINY, loss="corr"), 0),
        Member(v1, replace(TINY, noise_std=0.0), 5),
    ]


def _relative_difference(a, b, skip=()) -> float:
    """Largest ``||a - b|| / ||b||`` of two state dicts, but ``skip``."""
    b_state = b.net.state_dict()
    return max(
        float((p - b_state[name]).norm() / b_state[name].norm())
        for name, p in a.net.state_dict().items()
        if name not in skip
    )


def _assert_same_models(group, alone):
    for g, a in zip(group, alone):
        assert _relative_difference(g, a, skip=("bias",)) < TOLERANCE
        g_bias, a_bias = g.net.bias.detach(), a.net.bias.detach()
        assert float((g_bias - a_bias).norm() / a_bias.norm()) < BIAS_TOLERANCE
        assert g.history.best_epoch == a.history.best_epoch
        assert g.history.n_epochs == a.history.n_epochs
        np.testing.assert_allclose(g.history.selection_score, a.history.selection_score, atol=1e-5)
        np.testing.assert_allclose(g.history.train_loss, a.history.train_loss, atol=1e-5)
        np.testing.assert_allclose(g.val_r, a.val_r, atol=1e-5)


@pytest.mark.parametrize("conv", stacked.CONV_MODES)
def test_a_model_trained_in_a_group_is_the_model_trained_alone(conv):
    """Every model keeps its own initial weights, batch order, noise, loss, read-out and epoch,
    whichever way the group computes its convolutions."""
    images, members = _members()
    group = fit_group(images, members, device="cpu", progress=False, conv=conv)
    alone = [
        fit_etecrm(images, m.responses, m.config, m.seed, device="cpu", progress=False)
        for m in members
    ]
    _assert_same_models(group, alone)
    # and the models really differ from each other (seeds, variants): the check above can fail
    assert _relative_difference(group[0], group[5]) > 1e-3
    assert group[0].history.best_epoch >= 0


def test_a_small_memory_budget_splits_the_group_and_gives_the_same_models(monkeypatch):
    images, members = _members()
    estimate = estimate_memory(len(images), members, precision="fp32")  # the CPU's precision
    budget = estimate["shared"] + 2.5 * max(estimate["per_model"])
    plan = plan_groups(estimate, budget)
    assert [len(g) for g in plan] == [2, 2, 2]
    assert sorted(i for g in plan for i in g) == list(range(len(members)))

    trained_groups = []
    train_stacked = batched.train_stacked

    def spy(x, group, *args):
        trained_groups.append(len(group))
        return train_stacked(x, group, *args)

    monkeypatch.setattr(batched, "train_stacked", spy)
    split = fit_group(images, members, device="cpu", progress=False, budget=budget)
    assert trained_groups == [2, 2, 2]
    whole = fit_group(images, members, device="cpu", progress=False, budget=float("inf"))
    assert trained_groups == [2, 2, 2, 6]
    _assert_same_models(split, whole)


def test_the_memory_estimate_grows_with_the_models_and_covers_their_weights():
    images, members = _members()
    estimate = estimate_memory(len(images), members)
    assert estimate["shared"] >= images.size * 4  # the images, float32
    per_model = estimate["per_model"]
    assert per_model[2] < per_model[0]  # 7 voxels need less than 12
    for member, need in zip(members, per_model):
        net = member.config.build_network(member.responses.shape[1])
        weights = sum(p.numel() for p in net.parameters()) * 4
        assert need >= 5 * weights  # weights, gradients, two Adam moments, the best epoch's copy
    full = ETECRMConfig()
    big = [Member(np.zeros((1750, 800), np.float32), full, seed) for seed in range(25)]
    full_estimate = estimate_memory(1750, big)
    # the released design, 25 models of 800 voxels: more than a T4's 15 GB would hold in one group
    assert len(plan_groups(full_estimate, 15e9)) > 1
    assert len(plan_groups(full_estimate, 70e9)) == 1


def test_models_that_cannot_share_a_group_are_refused_with_the_reason():
    images, members = _members()
    members.append(Member(members[0].responses, replace(TINY, batch_size=8), 0))
    with pytest.raises(ValueError, match="must share batch_size"):
        fit_group(images, members, device="cpu", progress=False)
    with pytest.raises(ValueError, match="at least one model"):
        fit_group(images, [], device="cpu", progress=False)


@pytest.mark.parametrize("conv", ["loop", "unfold", "loop-unfold"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_every_way_to_compute_the_convolutions_gives_the_grouped_convolution(conv, channels_last):
    """One forward and backward pass of a stacked network on random weights and images (layers
    with 1 and 5 input channels, odd and even sides after halving): the same outputs and
    gradients as the grouped convolution, in float32 and in float64, in the layout of a GPU
    (channels-last) and of the CPU."""
    for dtype, tolerance in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        config = replace(TINY, image_size=40, channels=5)
        nets = [config.build_network(3, seed).to(dtype) for seed in range(4)]
        blocks = [stacked.Block(0, 4, 3, "corr", 0.0, True)]
        images = torch.rand(4, 6, 40, 40, dtype=dtype)
        results = []
        for mode in ("grouped", conv):
            net = stacked.StackedNet(nets, blocks, conv=mode)
            net.channels_last = channels_last
            (pred,) = net(images)
            grads = torch.autograd.grad(pred.square().sum(), list(net.parameters()))
            results.append([pred.detach(), *grads])
        for reference, got in zip(*results):
            assert float((got - reference).norm() / reference.norm()) < tolerance


def test_an_unknown_way_to_compute_the_convolutions_is_refused():
    images, members = _members()
    with pytest.raises(ValueError, match="conv must be one of"):
        fit_group(images, members[:1], device="cpu", progress=False, conv="fft")


@pytest.mark.parametrize("readout", ["squared", "signed"])
def test_networks_built_in_threads_have_the_initial_weights_of_build_network(readout):
    """Bit for bit, for several seeds and shapes: the group starts where fit_etecrm starts."""
    for seed, voxels in ((0, 12), (3, 7), (12345, 1)):
        config = replace(TINY, readout_weights=readout, n_layers=2 + seed % 2)
        expected = config.build_network(voxels, seed).state_dict()
        got = stacked.build_network(config, voxels, seed).state_dict()
        assert list(got) == list(expected)
        assert all(torch.equal(got[name], expected[name]) for name in expected)
    specs = [(TINY, 12, 0), (TINY, 7, 1), (TINY, 12, 2)]
    for (config, voxels, seed), net in zip(specs, stacked.build_networks(specs, "cpu")):
        assert torch.equal(net.weight, config.build_network(voxels, seed).weight)


def test_squaring_straight_into_bf16_is_the_cast_of_the_square_with_its_gradient():
    """What a GPU's read-out uses in bf16: the same numbers, forward and backward, bit for bit."""
    weight = torch.randn(300, 7, dtype=torch.float32, requires_grad=True)
    grad = torch.randn(300, 7).to(torch.bfloat16)
    reference = (weight * weight).to(torch.bfloat16)
    (expected,) = torch.autograd.grad(reference, weight, grad)
    fused = stacked.SquareInto.apply(weight, torch.bfloat16)
    (got,) = torch.autograd.grad(fused, weight, grad)
    assert fused.dtype == torch.bfloat16
    assert torch.equal(fused, reference) and torch.equal(got, expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("conv", stacked.CONV_MODES)
def test_on_a_gpu_the_estimate_covers_the_peak_memory(conv):
    images, members = _members()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    fit_group(images, members, device="cuda", progress=False, conv=conv)
    peak = torch.cuda.max_memory_allocated() - before
    estimate = estimate_memory(len(images), members, conv=conv)
    assert peak <= estimate["shared"] + sum(estimate["per_model"])
