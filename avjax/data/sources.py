"""Data sources and per-example transforms named by a data config.

`build(data_cfg)` -> ({split: source}, {'train': fn(example, rng), 'eval': fn(example)}).
Sources are random-access (len + getitem) and grain-compatible.
"""
import functools

from avjax.data import augment
from avjax.data.synthetic import SyntheticSource, SyntheticSpec

SPLITS = ("train", "val", "test")


def synthetic_spec(data_cfg) -> SyntheticSpec:
    s = data_cfg.synthetic
    return SyntheticSpec(
        num_classes=s.num_classes, visual_groups=tuple(s.visual_groups), audio_groups=tuple(s.audio_groups),
        image_size=s.image_size, audio_len=s.audio_len, sample_rate=s.sample_rate, sizes=tuple(s.sizes),
        seed=s.seed, object_scale=tuple(s.object_scale), distractor_prob=s.distractor_prob,
        clutter=s.clutter, pixel_noise=s.pixel_noise, audio_snr_db=tuple(s.audio_snr_db),
        distractor_sound_prob=s.distractor_sound_prob, distractor_sound_gain=s.distractor_sound_gain)


def build(data_cfg):
    if data_cfg.name == "synthetic":
        spec = synthetic_spec(data_cfg)
        sources = {split: SyntheticSource(spec, split, cache=data_cfg.get('cache', False))
                   for split in SPLITS}
        aug = data_cfg.augment
        train = functools.partial(augment.synthetic_train, flip_prob=aug.flip_prob,
                                  volume=tuple(aug.volume) if aug.volume else None)
        return sources, {"train": train, "eval": None}
    if data_cfg.name in ("ave", "music", "kinetics_sounds", "csv"):
        from avjax.data import layout_a
        return layout_a.build(data_cfg)
    raise ValueError(f"unknown dataset {data_cfg.name!r}")


def first_example(sources, transforms) -> dict:
    """The first training example as the model sees it (shapes for initialisation)."""
    example = sources["train"][0]
    return transforms["eval"](example) if transforms.get("eval") is not None else example
