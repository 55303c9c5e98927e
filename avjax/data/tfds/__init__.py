"""TFDS builders (array_record, no TensorFlow): synthetic_av, ave, music, kinetics_sounds.

    from avjax.data.tfds import build_and_load
    sources = build_and_load("ave", data_dir="~/tensorflow_datasets", manual_dir="/data/ave_layout_a")

Only features that work without TensorFlow are used: `Tensor` (zlib-encoded waveforms), `ClassLabel`,
`Text` and `Sequence(Image)` fed encoded JPEG bytes. Read back with `tfds.data_source` (random access,
grain-compatible); `tfds.load` / `as_dataset` would need TensorFlow and are never used.
"""
from avjax.data.tfds.builders import (AveBuilder, KineticsSoundsBuilder, MusicBuilder, SyntheticAvBuilder,
                                      build_and_load)
from avjax.data.tfds.records import build, frame_from_record, load_record

__all__ = ["AveBuilder", "KineticsSoundsBuilder", "MusicBuilder", "SyntheticAvBuilder", "build_and_load",
           "build", "frame_from_record", "load_record"]
