"""The FCN's input is the model file's integer input; the checker refuses what cannot stream."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sentei.errors import SenteiError  # noqa: E402
from sentei.host.modelfile import reference  # noqa: E402
from sentei.host.modelfile.synthetic import random_model  # noqa: E402
from sentei.training import models  # noqa: E402

from .conftest import TINY  # noqa: E402


def test_quantize_frames_is_bit_exact_with_the_reference():
    model = random_model(3)
    frames = np.random.default_rng(0).integers(0, 256, (2, model.input.height, model.input.width, 3), dtype=np.uint8)
    frames[0, 0, :3] = [[0, 0, 0], [255, 255, 255], [128, 3, 250]]
    got = models.quantize_frames(torch.from_numpy(frames).permute(0, 3, 1, 2), model.input).numpy()
    for i in range(2):
        np.testing.assert_array_equal(got[i], reference.quantize_input(model, frames[i]))


def test_fcn_shapes_and_upsample():
    net = models.FCN(TINY)
    assert net.upsample == 8
    assert net.layer_names() == ["conv1", "conv2", "conv3", "conv4", "classifier"]
    out = net(torch.zeros(1, 3, 32, 48))
    assert tuple(out.shape) == (1, 11, 4, 6)
    models.check_accelerator(net)


@pytest.mark.parametrize("bad, message", [
    (torch.nn.MaxPool2d(2), "layer blocks.1.3: MaxPool2d cannot run"),
    (torch.nn.Conv2d(8, 8, 5, padding=2), "layer conv2: kernel 5x5"),
    (torch.nn.Conv2d(8, 8, 3, padding=1, groups=2), "layer conv2: grouped convolution"),
    (torch.nn.ConvTranspose2d(8, 8, 2, stride=2), "ConvTranspose2d cannot run"),
])
def test_checker_refuses_and_names_the_layer(bad, message):
    net = models.FCN(TINY)
    if isinstance(bad, torch.nn.Conv2d) and not isinstance(bad, torch.nn.ConvTranspose2d):
        bad = torch.nn.Conv2d(8, 16, bad.kernel_size, padding=bad.padding, groups=bad.groups, bias=False)
        net.blocks[1][0] = bad
    else:
        net.blocks[1].append(bad)
    with pytest.raises(SenteiError, match=message):
        models.check_accelerator(net)


def test_checker_refuses_a_stride_three_and_an_empty_map():
    net = models.FCN(TINY)
    net.blocks[0][0].stride = (3, 3)
    with pytest.raises(SenteiError, match="layer conv1: stride"):
        models.check_accelerator(net)
    valid = models.FCN(TINY)
    valid.blocks[2][0].padding = (0, 0)  # dilation 2, no padding: a 5x5 span on a 4x4 map
    with pytest.raises(SenteiError, match="layer conv3: output .* is empty"):
        models.check_accelerator(valid, height=16, width=16)


def test_config_needs_layers():
    with pytest.raises(SenteiError, match="'layers' is empty"):
        models.FCN({"num_classes": 11, "layers": []})


@pytest.mark.parametrize("layers, message", [
    ([{"out": "abc"}], r"layer conv1 out is 'abc'; it must be an integer of at least 1"),
    ([{"out": 8, "kernel": 2.5}], "layer conv1 kernel is 2.5; it must be an integer of at least 1"),
    ([{"out": 8, "stride": 0, "name": "c"}], "layer c stride is 0; it must be an integer of at least 1"),
    ([{"out": 8, "padding": -1}], "layer conv1 padding is -1; it must be an integer of at least 0"),
    ([{"out": 8, "dilation": [2]}], r"layer conv1 dilation is \[2\]; it must be an integer of at least 1"),
    (["conv"], "layer 0 is 'conv'; write it as"),
    ({"out": 8}, "'layers' must be a list"),
])
def test_config_fields_are_checked_and_named(layers, message):
    with pytest.raises(SenteiError, match=f"^model config: {message}"):
        models.normalize_layers({"layers": layers})
    assert models.normalize_layers({"layers": [{"out": "8", "kernel": 3}], "num_classes": 4})[0] == \
        {"name": "conv1", "out": 8, "kernel": 3, "stride": 1, "dilation": 1, "padding": 1}


def test_class_argmax_is_argmax_with_the_first_class_on_ties():
    from sentei.training.models import class_argmax

    g = torch.Generator().manual_seed(0)
    scores = torch.randint(-3, 4, (2, 11, 17, 23), generator=g).float()  # many exact ties
    assert torch.equal(class_argmax(scores), scores.argmax(dim=1))
    assert torch.equal(class_argmax(torch.zeros(1, 5, 2, 2)), torch.zeros(1, 2, 2, dtype=torch.long))


@pytest.mark.parametrize("name, weights", [("camvid-fcn7.yaml", 573_664), ("camvid-fcn7w.yaml", 895_640)])
def test_shipped_configs_build_and_pass_the_accelerator_checker(name, weights):
    from sentei.training.commands import CONFIGS
    from sentei.training.train import load_config

    net = models.FCN(load_config(CONFIGS / name)["model"])
    models.check_accelerator(net, 360, 480)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert sum(m.weight.numel() for m in convs) == weights  # the conv weights a model file stores
    assert tuple(net(torch.zeros(1, 3, 360, 480)).shape) == (1, 11, 45, 60)
