"""The original's example preprocessing (docs/data.md, "Preprocessing"), with every size and rate configurable.

Frame choice: train picks the centre frame uniformly in [margin + 1, n - margin] (1-based, margin =
fps * 3 = 24 at 8 fps); eval takes n // 2. Audio: `length` samples centred at t = (frame - 0.5) / fps,
tiled first when the clip is short, zero-padded at the edges (the sample at the window centre sits
at index length // 2; as in the original, the last sample is always 0); train multiplies by
U[volume) ; both clamp to [-1, 1]. Image: train resizes the shorter side to int(size * 1.1)
(bicubic), random-crops `size` and flips with p 0.5; eval resizes to `size` and centre-crops.
"""
import dataclasses

import numpy as np
from PIL import Image

from avjax.configs.base import build_spec


@dataclasses.dataclass(frozen=True)
class PreprocessSpec:
    """Filled from `config.data.preprocess` + `config.data.augment` (defaults: configs.base)."""

    image_size: int
    train_resize_factor: float
    audio_len: int
    audio_rate: int
    fps: int
    margin_seconds: float
    flip_prob: float
    volume: tuple | None


def spec_from_config(data_cfg, **overrides) -> PreprocessSpec:
    """Real-media preprocessing from `data.preprocess` and the jitter of `data.augment`."""
    return build_spec(PreprocessSpec, data_cfg.preprocess, data_cfg.augment, **overrides)


def centre_frame(n_frames: int, train: bool, rng, spec: PreprocessSpec) -> int:
    """1-based index of the frame the example is centred on."""
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    if not train:
        return max(1, n_frames // 2)
    margin = int(spec.fps * spec.margin_seconds)
    lo, hi = margin + 1, n_frames - margin
    if hi < lo:  # shorter than two margins: any frame
        lo, hi = 1, n_frames
    return int(rng.integers(lo, hi + 1))


def audio_window(wave: np.ndarray, frame: int, spec: PreprocessSpec) -> np.ndarray:
    length = spec.audio_len
    if wave.shape[0] < length:
        wave = np.tile(wave, length // wave.shape[0] + 1)
    half = length // 2
    c = int((frame - 0.5) / spec.fps * spec.audio_rate)
    start, end = max(0, c - half), min(wave.shape[0], c + half)
    out = np.zeros(length, np.float32)
    if end > start:
        out[half - (c - start): half + (end - c)] = wave[start:end]
    return out


def resize_shorter(image: Image.Image, size: int) -> Image.Image:
    """torchvision Resize(int): the shorter side becomes `size`, aspect kept (bicubic)."""
    w, h = image.size
    if w <= h:
        ow, oh = size, int(size * h / w)
    else:
        oh, ow = size, int(size * w / h)
    return image.resize((ow, oh), Image.BICUBIC)


def resized(pixels: np.ndarray, train: bool, spec: PreprocessSpec) -> np.ndarray:
    """uint8 RGB (H, W, 3) -> uint8 with the shorter side at the train size (int(size * train_resize_factor))
    or, for evaluation, at `size`: the deterministic, expensive half of `image_transform`."""
    size = int(spec.image_size * spec.train_resize_factor) if train else spec.image_size
    return np.asarray(resize_shorter(Image.fromarray(pixels), size))


def random_crop_flip(image: np.ndarray, rng, spec: PreprocessSpec) -> np.ndarray:
    """A random `size` crop of a train-resized uint8 image, flipped horizontally with p = flip_prob."""
    size = spec.image_size
    h, w = image.shape[:2]
    top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    image = image[top: top + size, left: left + size]
    if rng.uniform() < spec.flip_prob:
        image = image[:, ::-1]
    return image


def centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The centre `size` x `size` crop of an eval-resized uint8 image (torchvision CenterCrop's rounding)."""
    h, w = image.shape[:2]
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return image[top: top + size, left: left + size]


def unit_pixels(image: np.ndarray) -> np.ndarray:
    """uint8 -> float32 in [0, 1]."""
    return np.asarray(image, np.float32) / 255.0


def image_transform(pixels: np.ndarray, train: bool, rng, spec: PreprocessSpec) -> np.ndarray:
    """uint8 RGB (H, W, 3) -> float32 (size, size, 3) in [0, 1]."""
    image = resized(pixels, train, spec)
    image = random_crop_flip(image, rng, spec) if train else centre_crop(image, spec.image_size)
    return unit_pixels(image)


def audio_transform(wave: np.ndarray, frame: int, train: bool, rng, spec: PreprocessSpec) -> np.ndarray:
    audio = audio_window(wave, frame, spec)    # a new float32 array: scaled and clamped in place
    if train and spec.volume is not None:
        audio *= rng.uniform(*spec.volume)
    return np.clip(audio, -1.0, 1.0, out=audio)


def make_example(pixels, wave, frame: int, label, ident, train: bool, rng, spec: PreprocessSpec) -> dict:
    """A decoded frame (uint8 RGB) and waveform, centred on `frame` -> a model-ready example."""
    return {"image": image_transform(pixels, train, rng, spec),
            "audio": audio_transform(wave, frame, train, rng, spec),
            "label": np.int32(label), "id": ident}
