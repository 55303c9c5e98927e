"""How golden files are made, shared by `tools/make_goldens.py` (needs torch) and the tests (numpy only).

Weights of rank >= 2 are a deterministic function of (seed, position in the state_dict, shape), so
they need not be committed; rank-1 tensors (BN affine + running statistics calibrated by train-mode
passes, biases) are stored in the golden file. Inputs are a function of the seed too.
"""
import os

import numpy as np

GOLDEN_DIR = os.path.join(os.path.dirname(__file__), "goldens")
ORIGINAL_GOLDEN = os.path.join(GOLDEN_DIR, "original_concat.npz")
SEED = 20210621
NUM_CLASSES = 28
BATCH = 2
SMALL = dict(image_size=32, audio_len=8191)
PAPER = dict(image_size=224, audio_len=65535)
PARTS = ("sound", "frame", "classifier")


def generated_weight(seed, index, shape):
    """He-scaled normal weights for a rank >= 2 tensor at `index` in its state_dict."""
    rng = np.random.default_rng([seed, index])
    fan_in = int(np.prod(shape[1:]))
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def make_inputs(seed, image_size, audio_len, batch=BATCH):
    """(image NHWC pixels in [0, 1], audio (B, L) in [-1, 1]) as float64."""
    rng = np.random.default_rng([seed, 10**6, image_size, audio_len])
    image = rng.uniform(0.0, 1.0, (batch, image_size, image_size, 3))
    t = np.arange(audio_len) / 11025.0
    freqs = rng.uniform(100, 2000, (batch, 1))
    audio = 0.5 * np.sin(2 * np.pi * freqs * t) + 0.3 * rng.uniform(-1, 1, (batch, audio_len))
    return image, audio


def state_dict_from_golden(golden, part):
    """Rebuild the `part` state_dict (numpy) from a golden file's key list and stored vectors."""
    keys = [str(k) for k in golden[f"{part}/keys"]]
    shapes = golden[f"{part}/shapes"]
    ranks = golden[f"{part}/ranks"]
    out = {}
    for index, (key, rank) in enumerate(zip(keys, ranks)):
        shape = tuple(int(s) for s in shapes[index][:rank])
        if rank >= 2:
            out[key] = generated_weight(int(golden["seed"]), index, shape)
        else:
            out[key] = golden[f"{part}/value/{key}"]
    return out


def frame_to_torchvision_keys(frame_state):
    """Rename `features.<i>.*` of the original frame net into torchvision ResNet18 names."""
    children = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}
    out = {}
    for key, value in frame_state.items():
        _, idx, rest = key.split(".", 2)
        out[f"{children[idx]}.{rest}"] = value
    return out
