"""CNN layer features: weights provenance (local file, untrained, the clear error offline), hooks,
reduction."""

import hashlib
import urllib.error

import numpy as np
import pytest
import torch

from etecrm_lib.features import cnn
from etecrm_lib.features.cnn import (
    CNNConfig,
    CNNFeatures,
    cnn_features,
    layer_names,
    load_cnn,
    preprocess,
)

SMALL = dict(input_size=64, pool_size=2, batch_size=8)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ETECRM_CACHE", str(tmp_path / "cache"))


def _images(n=10, size=32, seed=0):
    return np.random.default_rng(seed).random((n, size, size)).astype(np.float32)


def test_untrained_features_shapes_determinism_and_provenance():
    cfg = CNNConfig(weights=None, layers=("features.1", "features.4", "classifier.2"), **SMALL)
    a, weights = cnn_features(_images(), cfg, device="cpu", cache=False, progress=False)
    b, _ = cnn_features(_images(), cfg, device="cpu", cache=False, progress=False)
    c, weights_c = cnn_features(
        _images(),
        CNNConfig(**{**cfg.__dict__, "seed": 1}),
        device="cpu",
        cache=False,
        progress=False,
    )
    assert weights == "untrained(seed=0)" and weights_c == "untrained(seed=1)"
    assert {k: v.shape for k, v in a.items()} == {
        "features.1": (10, 64 * 4),
        "features.4": (10, 192 * 4),
        "classifier.2": (10, 4096),
    }
    for layer in a:
        np.testing.assert_array_equal(a[layer], b[layer])
        assert not np.allclose(a[layer], c[layer])
        assert a[layer].min() >= 0  # ReLU outputs


def test_local_weights_file(tmp_path):
    # any torchvision classifier works by name; a small one keeps the state dict file small
    reference, _ = load_cnn("squeezenet1_1", None, seed=3)
    path = tmp_path / "squeezenet_test.pth"
    torch.save(reference.state_dict(), path)
    net, weights = load_cnn("squeezenet1_1", str(path))
    assert weights == f"file:{path} sha256:{hashlib.sha256(path.read_bytes()).hexdigest()}"
    for (name, p), q in zip(net.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(p, q), name
    cfg = CNNConfig(model="squeezenet1_1", weights=str(path), layers=("features.3",), **SMALL)
    got, _ = cnn_features(_images(), cfg, device="cpu", progress=False)
    want, _ = cnn_features(
        _images(),
        CNNConfig(**{**cfg.__dict__, "weights": None, "seed": 3}),
        device="cpu",
        progress=False,
    )
    other_seed, _ = cnn_features(
        _images(),
        CNNConfig(**{**cfg.__dict__, "weights": None, "seed": 4}),
        device="cpu",
        progress=False,
    )
    np.testing.assert_allclose(got["features.3"], want["features.3"], rtol=1e-5, atol=1e-6)
    assert not np.allclose(got["features.3"], other_seed["features.3"])
    # a checkpoint wrapped as {"state_dict": ...} works too; a state dict of another network does
    # not
    torch.save({"state_dict": reference.state_dict()}, tmp_path / "wrapped.pth")
    assert load_cnn("squeezenet1_1", str(tmp_path / "wrapped.pth"))[1].startswith("file:")
    torch.save(torch.nn.Linear(2, 2).state_dict(), tmp_path / "other.pth")
    with pytest.raises(ValueError, match="do not fit"):
        load_cnn("squeezenet1_1", str(tmp_path / "other.pth"))
    with pytest.raises(FileNotFoundError):
        load_cnn("squeezenet1_1", str(tmp_path / "missing.pth"))


def test_failed_download_says_how_to_get_weights(monkeypatch, capsys):
    def offline(url, *args, **kwargs):
        print(f'Downloading: "{url}" to /root/.cache/torch/hub/checkpoints/x.pth')  # as torch does
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(RuntimeError) as err:
        load_cnn("alexnet", "DEFAULT")
    assert capsys.readouterr().out == ""  # no download line with a cache path on the page
    message = str(err.value)
    assert "weights=None" in message and ".pth" in message and "IMAGENET1K_V1" in message
    with pytest.raises(ValueError, match="IMAGENET1K_V1"):
        load_cnn("alexnet", "NOT_A_WEIGHT_NAME")


def test_unknown_layer_or_model_lists_the_valid_names():
    with pytest.raises(ValueError, match="features.11"):
        cnn_features(
            _images(), CNNConfig(weights=None, layers=("features.1", "conv9"), **SMALL), cache=False
        )
    with pytest.raises(ValueError, match="alexnet"):
        load_cnn("not_a_network", None)
    assert "classifier.5" in layer_names("alexnet")
    with pytest.raises(ValueError, match="layers="):
        CNNConfig(model="resnet18").layer_list()


def test_preprocessing_and_hooks_see_the_right_tensors():
    x = torch.full((2, 20, 20), 0.5)
    y = preprocess(x, 48)
    assert y.shape == (2, 3, 48, 48)
    expected = (0.5 - torch.tensor(cnn.IMAGENET_MEAN)) / torch.tensor(cnn.IMAGENET_STD)
    torch.testing.assert_close(y[0, :, 10, 10], expected)
    # the conv output is recorded before the in-place ReLU that follows it overwrites it
    net, _ = load_cnn("alexnet", None)
    images = _images(4)
    acts = cnn.layer_activations(
        net, images, ["features.0", "features.1"], 64, 2, device="cpu", progress=False
    )
    with torch.no_grad():
        conv = net.features[0](preprocess(torch.as_tensor(images), 64))
    want = torch.nn.functional.adaptive_avg_pool2d(conv, 2).flatten(1).numpy()
    np.testing.assert_allclose(acts["features.0"], want, rtol=1e-4, atol=1e-5)
    assert acts["features.0"].min() < 0 <= acts["features.1"].min()
    # stopping the forward pass early gives the same values
    alone = cnn.layer_activations(net, images, ["features.1"], 64, 2, device="cpu", progress=False)
    np.testing.assert_array_equal(alone["features.1"], acts["features.1"])


def test_pca_is_fitted_on_training_images_only():
    from sklearn.decomposition import PCA

    cfg = CNNConfig(weights=None, layers=("features.4",), reduction="pca", n_components=5, **SMALL)
    train, test = _images(12, seed=1), _images(6, seed=2)
    extractor = CNNFeatures(cfg, device="cpu", progress=False).fit(train)
    got = extractor.transform(test)["features.4"]
    raw_train = extractor.activations(train)["features.4"]
    raw_test = extractor.activations(test)["features.4"]
    want = PCA(5).fit(raw_train).transform(raw_test)
    assert got.shape == (6, 5)
    np.testing.assert_allclose(np.abs(got), np.abs(want), rtol=1e-3, atol=1e-3 * np.abs(want).max())
    # refitting on other images changes the reduction: it really came from `train`
    other = (
        CNNFeatures(cfg, device="cpu", progress=False)
        .fit(_images(12, seed=5))
        .transform(test)["features.4"]
    )
    assert not np.allclose(np.abs(other), np.abs(got))
    rand = CNNFeatures(
        CNNConfig(**{**cfg.__dict__, "reduction": "random"}), device="cpu", progress=False
    )
    assert rand.fit(train).transform(test)["features.4"].shape == (6, 5)
    with pytest.raises(RuntimeError, match="fit"):
        CNNFeatures(cfg, device="cpu", progress=False).transform(test)


def test_activations_are_cached(monkeypatch):
    cfg = CNNConfig(weights=None, layers=("features.1",), **SMALL)
    first, _ = cnn_features(_images(), cfg, device="cpu", progress=False)

    def fail(*args, **kwargs):
        raise AssertionError("should have been read from the cache")

    monkeypatch.setattr(cnn, "layer_activations", fail)
    again, _ = cnn_features(_images(), cfg, device="cpu", progress=False)
    np.testing.assert_array_equal(first["features.1"], again["features.1"])
    with pytest.raises(AssertionError):  # other weights: another key
        cnn_features(
            _images(), CNNConfig(**{**cfg.__dict__, "seed": 7}), device="cpu", progress=False
        )
