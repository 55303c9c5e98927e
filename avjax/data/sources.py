"""The one place that chooses where examples come from: synthetic, layout-A files, their decoded format
(avjax.data.decoded), or TFDS records.

`build(data_cfg)` -> ({split: source}, {'train': fn(example, rng), 'eval': fn(example) | None}).
Sources are random-access (len + getitem) and grain-compatible.
"""
import functools

from avjax.configs.base import build_spec
from avjax.data import augment, preprocess
from avjax.data.synthetic import SyntheticSource, SyntheticSpec

SPLITS = ("train", "val", "test")
FILE_DATASETS = ("ave", "music", "kinetics_sounds", "csv")


def synthetic_spec(data_cfg, **overrides) -> SyntheticSpec:
    return build_spec(SyntheticSpec, data_cfg.synthetic, **overrides)


preprocess_spec = preprocess.spec_from_config   # real-media preprocessing and jitter of a data config


@functools.lru_cache(maxsize=6)
def _cached_synthetic(spec: SyntheticSpec, split: str) -> SyntheticSource:
    """One in-memory source per spec and split in a process: every run and seed of an experiment reads
    the examples generated once."""
    return SyntheticSource(spec, split, cache=True)


def build(data_cfg):
    if data_cfg.name == "synthetic":
        spec = synthetic_spec(data_cfg)
        cached = data_cfg.get("cache", False)
        sources = {split: _cached_synthetic(spec, split) if cached else SyntheticSource(spec, split)
                   for split in SPLITS}
        aug = data_cfg.augment
        train = functools.partial(augment.synthetic_train, flip_prob=aug.flip_prob,
                                  volume=tuple(aug.volume) if aug.volume else None)
        return sources, {"train": train, "eval": None}
    if data_cfg.name in FILE_DATASETS or data_cfg.get("preset") == "folder":
        source = data_cfg.get("source", "files")
        if source == "tfds":
            from avjax.data import tfds  # TFDS only when asked for: its import is slow
            return tfds.build(data_cfg, preprocess_spec(data_cfg))
        if source == "decoded":
            from avjax.data import decoded
            return decoded.build(data_cfg, preprocess_spec(data_cfg))
        if source != "files":
            raise ValueError(f"{data_cfg.name}: data.source {source!r} is not 'files', 'decoded' or 'tfds'")
        from avjax.data import layout_a
        return layout_a.build(data_cfg, preprocess_spec(data_cfg))
    raise ValueError(f"unknown dataset {data_cfg.name!r}; choose 'synthetic' or one of {FILE_DATASETS}")


def first_example(sources, transforms) -> dict:
    """The first training example as the model sees it (shapes for initialisation)."""
    example = sources["train"][0]
    return transforms["eval"](example) if transforms.get("eval") is not None else example
