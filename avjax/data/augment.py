"""Per-example transforms of already-decoded examples (arrays in, arrays out; numpy rng in).

`synthetic_train` applies the training-time jitter that makes sense for generated examples
(horizontal flip with its box, the original's volume jitter U[lo, hi) followed by the clamp).
Real-media preprocessing (frame choice, resize + crop, audio window) lives in `preprocess.py`.
"""
import numpy as np


def flip_example(example):
    out = dict(example, image=example["image"][:, ::-1])
    if "box" in example:
        y0, x0, y1, x1 = example["box"]
        out["box"] = np.array([y0, 1 - x1, y1, 1 - x0], np.float32)
    return out


def volume_jitter(audio, rng, low, high):
    """The original's train-time volume jitter: multiply by U[low, high), then clamp to [-1, 1]."""
    return np.clip(audio * rng.uniform(low, high), -1.0, 1.0).astype(np.float32)


def synthetic_train(example, rng, *, flip_prob=0.5, volume=(0.5, 1.5)):
    if rng.uniform() < flip_prob:
        example = flip_example(example)
    if volume is not None:
        example = dict(example, audio=volume_jitter(example["audio"], rng, *volume))
    return dict(example, image=np.ascontiguousarray(example["image"], np.float32))
