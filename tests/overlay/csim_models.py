"""Small random models for the overlay tests, each covering a corner of the layer space."""
from sentei.host.modelfile.synthetic import TINY, LayerSpec, random_model

# k=3 s=2 p=1, k=3 d=2 p=2, 4-bit weights, k=1: the synthetic default
def tiny(seed: int = 0):
    return random_model(seed=seed, specs=TINY)


# odd frame (19*23*3 bytes is not a multiple of 4), 6-bit input, linear 6-bit outputs,
# padding 0, dilation 3 with padding 2 and stride 2, 1x1 stride 2, unbalanced (zero-padded) filters
ODD_SPECS = (LayerSpec(6, kernel=3, stride=1, padding=0, density=0.7, out_bits=6, act="linear"),
             LayerSpec(12, kernel=3, stride=2, dilation=3, padding=2, density=0.2, weight_bits=4),
             LayerSpec(10, kernel=1, stride=2, padding=0, density=0.6, out_bits=6),
             LayerSpec(10, kernel=3, stride=1, padding=1, density=0.4, weight_bits=2, out_bits=4, act="linear"))


def odd(seed: int = 1):
    return random_model(seed=seed, height=19, width=23, specs=ODD_SPECS, input_bits=6, balanced=False,
                        num_classes=5, classifier_density=0.5, classifier_bits=4)


# padding larger than "same" (k=3 p=2 grows the map, k=1 p=1 adds a bias-only border),
# a dense layer (K = Cin*k*k), 16-bit activations
WIDE_SPECS = (LayerSpec(4, kernel=3, stride=1, padding=2, density=1.0, out_bits=16),
              LayerSpec(8, kernel=1, stride=1, padding=1, density=0.5, out_bits=8),
              LayerSpec(6, kernel=3, stride=2, padding=0, density=0.1, out_bits=8))


def wide(seed: int = 2):
    return random_model(seed=seed, height=9, width=14, specs=WIDE_SPECS, num_classes=3)


# one or two stored weights per filter and all filters in parallel (lanes = Cout: NF*K = 1, 2
# < L = 3): the engine's pixel is as long as its window load, the next window's chunks fill
# every clock of the pixel (with the seed, 75 % and 67 % of the two layers' outputs nonzero)
STARVED_SPECS = (LayerSpec(4, kernel=3, stride=1, padding=1, density=0.04),
                 LayerSpec(6, kernel=3, stride=2, padding=1, density=0.05))
STARVED_LANES = [4, 6, 3]


def starved(seed: int = 0):
    return random_model(seed=seed, height=10, width=12, specs=STARVED_SPECS, num_classes=3)


def camvid_standin(last_dilation: int = 8, seed: int = 0, density: float = 0.1):
    """The CamVid network's shapes (training/configs/camvid-fcn7.yaml) at 360x480 with random
    filter-wise weights: conv5/conv6 at dilation 2/4, conv7 at ``last_dilation`` (8 in the real
    network; 1 in the first synthetic stand-in), 1x1 classifier to 11 classes."""
    specs = (LayerSpec(32, stride=2, density=density), LayerSpec(64, stride=2, density=density),
             LayerSpec(64, density=density), LayerSpec(128, stride=2, density=density),
             LayerSpec(128, dilation=2, density=density), LayerSpec(128, dilation=4, density=density),
             LayerSpec(128, dilation=last_dilation, density=density))
    return random_model(seed=seed, height=360, width=480, specs=specs, num_classes=11,
                        name=f"camvid-standin-d{last_dilation}")
