"""The embedded default dataset: synthetic audio-visual events, generated from a seed, no files.

Each of K classes is a *sounding object*: a visual signature (shape, colour, texture) and a sound
signature (pitch, harmonic timbre, rhythm envelope). An example shows the class's object at a random
position and scale among clutter and (sometimes) silent distractor objects, and plays its sound with
noise and (sometimes) a quieter distractor sound. Every example records the sounding object's box
(normalised y0, x0, y1, x1) for localization.

Neither modality suffices alone: classes share signatures in pairs, differently per modality
(`visual_groups`, `audio_groups`). With the defaults, classes 0/1 and 2/3 look alike (only their
sounds tell them apart) while 0/2, 1/3, 4/5 and 6/7 sound alike (only their looks tell them apart).
The Bayes accuracy is therefore about 75 % from vision, 50 % from audio and 100 % from both, before
noise and distractors, so a trained model must reach AV > V > A.

Example i of a split is a pure function of (seed, split, i): the dataset is random-access, needs no
storage, and is identical on every host and every run.
"""
import dataclasses

import numpy as np

SPLITS = {"train": 0, "val": 1, "test": 2}
SHAPES = ("disk", "square", "triangle", "ring", "cross", "diamond")
TEXTURES = ("solid", "stripes", "checker")
PALETTE = np.array([[0.90, 0.15, 0.15], [0.15, 0.75, 0.20], [0.20, 0.35, 0.95], [0.95, 0.85, 0.10],
                    [0.85, 0.25, 0.85], [0.10, 0.85, 0.85], [0.95, 0.55, 0.10], [0.55, 0.35, 0.15]])
PITCHES = (196.0, 261.6, 329.6, 440.0, 523.3, 659.3, 784.0, 987.8)
RHYTHMS_HZ = (0.0, 2.0, 4.0, 6.5)  # 0: sustained tone
TIMBRES = ((1.0, 0.5, 0.33, 0.25, 0.2), (1.0, 0.0, 0.33, 0.0, 0.2), (1.0, 0.8, 0.6, 0.5, 0.4))


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
    """Every knob of the generator, filled from `config.data.synthetic` (defaults: configs.base)."""

    num_classes: int
    visual_groups: tuple[int, ...]     # classes with the same entry look alike
    audio_groups: tuple[int, ...]      # classes with the same entry sound alike
    image_size: int
    audio_len: int
    sample_rate: int
    sizes: tuple[int, int, int]        # train, val, test
    seed: int
    object_scale: tuple[float, float]  # side / image side
    distractor_prob: float             # chance of one silent distractor object
    clutter: int                       # random rectangles in the background
    pixel_noise: float
    audio_snr_db: tuple[float, float]  # signal-to-white-noise ratio
    distractor_sound_prob: float
    distractor_sound_gain: float

    def __post_init__(self):
        k = self.num_classes
        if len(self.visual_groups) != k or len(self.audio_groups) != k:
            raise ValueError(f"visual_groups and audio_groups need one entry per class ({k})")
        pairs = set(zip(self.visual_groups, self.audio_groups))
        if len(pairs) != k:
            raise ValueError("two classes share both their visual and audio group: not separable")
        if max(self.visual_groups) >= len(SHAPES) * len(PALETTE) or max(self.audio_groups) >= len(PITCHES):
            raise ValueError("too many visual or audio identities for the built-in signatures")

    def split_size(self, split: str) -> int:
        return self.sizes[SPLITS[split]]


def _shape_mask(shape, yy, xx):
    """Mask of a unit shape on coordinates in [-1, 1]."""
    r = np.sqrt(yy ** 2 + xx ** 2)
    if shape == "disk":
        return r <= 1
    if shape == "square":
        return (np.abs(yy) <= 0.85) & (np.abs(xx) <= 0.85)
    if shape == "triangle":
        return (yy <= 0.85) & (yy >= -0.85 + 1.7 * np.abs(xx))
    if shape == "ring":
        return (r <= 1) & (r >= 0.55)
    if shape == "cross":
        return ((np.abs(yy) <= 0.3) | (np.abs(xx) <= 0.3)) & (np.abs(yy) <= 1) & (np.abs(xx) <= 1)
    if shape == "diamond":
        return np.abs(yy) + np.abs(xx) <= 1
    raise ValueError(shape)


def _texture(texture, yy, xx, rng):
    if texture == "solid":
        return np.ones_like(yy)
    phase = rng.uniform(0, 2 * np.pi)
    if texture == "stripes":
        return 0.55 + 0.45 * (np.sin(7 * (xx + yy) + phase) > 0)
    return 0.55 + 0.45 * ((np.floor(3 * (xx + 1)) + np.floor(3 * (yy + 1))) % 2)


def _draw_object(canvas, identity, rng, spec):
    """Draw visual identity at a random place and scale; -> its box (y0, x0, y1, x1) in [0, 1]."""
    n = spec.image_size
    side = rng.uniform(*spec.object_scale) * n
    cy, cx = rng.uniform(side / 2, n - side / 2, size=2)
    y0, y1 = int(max(0, np.floor(cy - side / 2))), int(min(n, np.ceil(cy + side / 2)))
    x0, x1 = int(max(0, np.floor(cx - side / 2))), int(min(n, np.ceil(cx + side / 2)))
    yy, xx = np.meshgrid((np.arange(y0, y1) + 0.5 - cy) / (side / 2),
                         (np.arange(x0, x1) + 0.5 - cx) / (side / 2), indexing="ij")
    shape = SHAPES[identity % len(SHAPES)]
    mask = _shape_mask(shape, yy, xx)
    colour = PALETTE[identity % len(PALETTE)] * rng.uniform(0.85, 1.1)
    tex = _texture(TEXTURES[(identity // len(SHAPES) + identity) % len(TEXTURES)], yy, xx, rng)
    patch = canvas[y0:y1, x0:x1]
    patch[mask] = np.clip(colour[None, :] * tex[mask][:, None], 0, 1)
    ys, xs = np.nonzero(mask)
    return np.array([(y0 + ys.min()) / n, (x0 + xs.min()) / n, (y0 + ys.max() + 1) / n,
                     (x0 + xs.max() + 1) / n], np.float32)


def _render_image(visual_id, rng, spec):
    n = spec.image_size
    base = rng.uniform(0.25, 0.75, size=3)
    grad = rng.uniform(-0.2, 0.2, size=(2, 3))
    t = np.linspace(-1, 1, n)
    canvas = base + t[:, None, None] * grad[0] + t[None, :, None] * grad[1]
    canvas = np.broadcast_to(canvas, (n, n, 3)).copy()
    for _ in range(spec.clutter):  # background clutter: random translucent rectangles
        h, w = rng.integers(n // 16, n // 4, size=2)
        y, x = rng.integers(0, n - h), rng.integers(0, n - w)
        canvas[y:y + h, x:x + w] = 0.5 * canvas[y:y + h, x:x + w] + 0.5 * rng.uniform(0, 1, 3)
    n_ids = max(spec.visual_groups) + 1
    if rng.uniform() < spec.distractor_prob:  # a silent object, drawn first so the source is on top
        _draw_object(canvas, int(rng.integers(0, n_ids)), rng, spec)
    box = _draw_object(canvas, visual_id, rng, spec)
    canvas += rng.normal(0, spec.pixel_noise, canvas.shape)
    return np.clip(canvas, 0, 1).astype(np.float32), box


def _sound(audio_id, rng, spec):
    t = np.arange(spec.audio_len) / spec.sample_rate
    f0 = PITCHES[audio_id % len(PITCHES)] * rng.uniform(0.98, 1.02)
    timbre = TIMBRES[audio_id % len(TIMBRES)]
    wave = sum(a * np.sin(2 * np.pi * f0 * (k + 1) * t + rng.uniform(0, 2 * np.pi))
               for k, a in enumerate(timbre) if a)
    rate = RHYTHMS_HZ[(audio_id // len(TIMBRES) + audio_id) % len(RHYTHMS_HZ)]
    if rate:
        phase = rng.uniform(0, 1)
        env = np.exp(-6.0 * ((t * rate + phase) % 1.0))
    else:
        env = np.ones_like(t)
    wave = wave * env
    return wave / (np.abs(wave).max() + 1e-8)


def _render_audio(audio_id, rng, spec):
    wave = rng.uniform(0.3, 0.6) * _sound(audio_id, rng, spec)
    n_ids = max(spec.audio_groups) + 1
    if rng.uniform() < spec.distractor_sound_prob:
        other = int(rng.integers(0, n_ids))
        wave = wave + spec.distractor_sound_gain * rng.uniform(0.3, 0.6) * _sound(other, rng, spec)
    power = np.mean(wave ** 2)
    snr = 10 ** (rng.uniform(*spec.audio_snr_db) / 10)
    wave = wave + rng.normal(0, np.sqrt(power / snr), wave.shape)
    return np.clip(wave, -1, 1).astype(np.float32)


def generate_example(spec: SyntheticSpec, split: str, index: int) -> dict:
    """Example `index` of `split`: image (H, W, 3) in [0, 1], audio (L,) in [-1, 1], label, box, id."""
    if not 0 <= index < spec.split_size(split):
        raise IndexError(f"synthetic {split} has {spec.split_size(split)} examples, asked for {index}")
    rng = np.random.default_rng([spec.seed, SPLITS[split], index])
    label = int(rng.integers(0, spec.num_classes))
    image, box = _render_image(spec.visual_groups[label], rng, spec)
    audio = _render_audio(spec.audio_groups[label], rng, spec)
    return {"image": image, "audio": audio, "label": np.int32(label), "box": box,
            "id": f"synthetic/{split}/{index:06d}"}


class SyntheticSource:
    """A random-access (grain-compatible) source over one split of the synthetic dataset.

    With `cache=True` each example is generated once and kept in memory (the default config's
    splits take about 280 MB), so epochs after the first cost no generation time.
    """

    def __init__(self, spec: SyntheticSpec, split: str, cache: bool = False):
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {list(SPLITS)}")
        self.spec, self.split = spec, split
        self._cache = [None] * len(self) if cache else None

    def __len__(self):
        return self.spec.split_size(self.split)

    def __getitem__(self, index):
        index = int(index)
        if self._cache is None:
            return generate_example(self.spec, self.split, index)
        if self._cache[index] is None:
            self._cache[index] = generate_example(self.spec, self.split, index)
        return self._cache[index]

    def __repr__(self):
        return f"SyntheticSource({self.split}, n={len(self)}, classes={self.spec.num_classes})"
