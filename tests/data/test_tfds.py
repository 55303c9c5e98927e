"""TFDS builders without TensorFlow: array_record written, read back with tfds.data_source."""
import os

import numpy as np
import pytest

from avjax.configs.base import base_config, build_spec, synthetic_data
from avjax.data import layout_a, pipeline, sources as data_sources
from avjax.data.synthetic import SyntheticSpec, generate_example
from tests.data import fixtures


def test_synthetic_builder_round_trip(tmp_path, monkeypatch):
    from avjax.data.tfds import builders
    spec = build_spec(SyntheticSpec, synthetic_data(), sizes=(6, 3, 3), image_size=32, audio_len=4096)
    monkeypatch.setattr(builders.SyntheticAvBuilder, "SPEC", spec)
    sources = builders.build_and_load("synthetic_av", str(tmp_path))
    assert {k: len(v) for k, v in sources.items()} == {"train": 6, "val": 3, "test": 3}
    for record in sources["val"]:
        index = int(record["id"].decode().rsplit("/", 1)[1])
        ref = generate_example(spec, "val", index)
        np.testing.assert_array_equal(record["image"], ref["image"])
        np.testing.assert_array_equal(record["audio"], ref["audio"])
        assert record["label"] == ref["label"]


def test_layout_a_builder_reads_manual_dir_and_feeds_grain(tmp_path, monkeypatch):
    from avjax.data import prepare
    from avjax.data.tfds import builders, records
    root = tmp_path / "videos"
    classes = layout_a.CLASSES["music"][:2]
    for cls in classes:
        os.makedirs(root / cls)
        for i in range(2):
            fixtures.make_video(root / cls / f"{cls}{i}.mp4", seconds=1.0, fps=16)
    items = prepare.items_from_class_tree(str(root))
    items = [prepare.Item(i.video, i.label, split, i.id) for i, split in zip(items, ("train", "val", "test", "train"))]
    prepare.prepare(items, str(tmp_path / "a"), csv_names=layout_a.CSV_NAMES["music"], progress=False)
    sources = builders.build_and_load("music", str(tmp_path / "tfds"), manual_dir=str(tmp_path / "a"))
    assert len(sources["train"]) == 2 and len(sources["test"]) == 1
    spec = data_sources.preprocess_spec(base_config().data, image_size=32, audio_len=4095)
    record = sources["test"][0]
    assert records.frame_from_record(record, 8).shape == (48, 64, 3)
    ex = records.load_record(record, False, None, spec)
    assert ex["image"].shape == (32, 32, 3) and ex["audio"].shape == (4095,)
    train = lambda r, rng: records.load_record(r, True, rng, spec)  # noqa: E731
    batch = next(iter(pipeline.train_dataset(sources["train"], train, batch_size=2, seed=0)))
    assert batch["image"].shape == (2, 32, 32, 3)


def test_missing_manual_dir_shows_the_instructions(tmp_path):
    from avjax.data.tfds import builders
    assert "frames/<Class>/<ID>.mp4/%06d.jpg" in builders.AveBuilder.MANUAL_DOWNLOAD_INSTRUCTIONS
    with pytest.raises(Exception, match="layout A|manual"):
        builders.build_and_load("ave", str(tmp_path / "tfds"), manual_dir=str(tmp_path / "nothing"))
