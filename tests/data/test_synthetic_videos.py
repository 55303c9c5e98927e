"""The synthetic events written as real mp4 files decode back to their frame and sound, and `prepare`
turns the tree into layout A with the classes as folders."""
import os

import numpy as np
import pytest

from avjax.configs.base import synthetic_data
from avjax.data import media, prepare, sources, synthetic
from avjax.data.synthetic_videos import write_video_tree
from avjax.configs.base import base_config


def _spec():
    data = base_config().data
    data.synthetic = synthetic_data()
    return sources.synthetic_spec(data, num_classes=4, visual_groups=(0, 0, 1, 1), audio_groups=(0, 1, 0, 1),
                                  sizes=(40, 8, 8))


def test_videos_decode_to_the_synthetic_frame_and_sound(tmp_path):
    spec = _spec()
    written = write_video_tree(tmp_path, spec, per_class=2, seconds=1.0, fps=8, class_names="abcd")
    assert sorted(written) == list("abcd") and all(len(p) == 2 for p in written.values())
    path = written["c"][0]
    index = int(os.path.basename(path)[len("train"):-len(".mp4")])
    example = synthetic.generate_example(spec, "train", index)
    assert int(example["label"]) == 2
    frames = list(media.video_frames(path, 8))
    assert len(frames) == 8
    frame = np.asarray(frames[4], np.float32) / 255
    assert frame.shape == example["image"].shape
    assert np.mean(np.abs(frame - example["image"])) < 0.08  # lossy H.264 (another example: ~0.2)
    wave = media.video_audio(path, spec.sample_rate)
    n = spec.audio_len
    ref = np.resize(example["audio"], wave.shape[0])
    # AAC delays and smooths; the best alignment within 4096 samples still correlates strongly
    best = max(np.corrcoef(wave[lag:lag + n], ref[:n])[0, 1] for lag in range(0, 4096, 1))
    assert best > 0.8
    # a rerun keeps the files (an interrupted tree is finished, not rewritten)
    before = os.path.getmtime(path)
    assert write_video_tree(tmp_path, spec, per_class=2, seconds=1.0, fps=8, class_names="abcd") == written
    assert os.path.getmtime(path) == before and not any(p.endswith(".partial") for p in os.listdir(tmp_path / "c"))


def test_prepare_reads_the_tree(tmp_path):
    spec = _spec()
    write_video_tree(tmp_path / "videos", spec, per_class=3, seconds=1.0, fps=8)
    items = prepare.items_from_class_tree(str(tmp_path / "videos"), seed=0)
    _, _, counts = prepare.prepare(items, str(tmp_path / "a"), progress=False)
    assert sum(counts.values()) == 12 and {label for label, _ in counts} == {f"class{k}" for k in range(4)}


def test_not_enough_examples_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="too few examples"):
        write_video_tree(tmp_path, _spec(), per_class=30, seconds=1.0)
    with pytest.raises(ValueError, match="4 classes"):
        write_video_tree(tmp_path, _spec(), per_class=1, class_names=["x"])
