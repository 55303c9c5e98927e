"""The decoded format gives layout A's examples exactly, survives a killed write, and refuses bad folders."""
import json
import os
import pickle
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from absl import flags

from avjax import experiment, parallel
from avjax import config_files
from avjax.data import decoded, layout_a, pipeline, prepare, preprocess, sources
from tests.data import fixtures

flags.FLAGS(sys.argv[:1])  # grain's worker processes read absl flags
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def folder_config(root, **overrides):
    fields = {"data.root": str(root), "data.preprocess.image_size": 32, "data.preprocess.audio_len": 4095}
    fields.update(overrides)
    return config_files.resolve_data(config_files.load_config(os.path.join(REPO, "configs", "folder.py"), **fields))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A prepared folder of real mp4s (7 s at 8 fps: 56 frames, so the train draw skips 24 at each end)
    and its decoded format, written by two processes."""
    videos = tmp_path_factory.mktemp("videos")
    for cls, colour, hz in (("dog", (200, 40, 40), 300.0), ("cat", (40, 40, 200), 900.0)):
        os.makedirs(videos / cls)
        for i in range(4):
            fixtures.make_video(videos / cls / f"{cls}{i}.mp4", seconds=7.0, fps=8, colour=colour, tone_hz=hz,
                                audio_rate=22050, channels=1)
    root = tmp_path_factory.mktemp("prepared")
    items = prepare.items_from_class_tree(str(videos), seed=0)
    items = [prepare.Item(it.video, it.label, ("train", "train", "val", "test")[k % 4], it.id)
             for k, it in enumerate(items)]
    prepare.prepare(items, str(root), workers=2, progress=False)
    config = folder_config(root, **{"data.source": "decoded"})
    out = decoded.write(config.data, sources.preprocess_spec(config.data), workers=2, progress=False)
    return root, out


def _equal(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(np.asarray(a[k]), np.asarray(b[k])), k
        assert np.asarray(a[k]).dtype == np.asarray(b[k]).dtype, k


@pytest.mark.slow
def test_examples_equal_layout_a_to_the_bit(folder):
    root, _ = folder
    files, files_t = sources.build(folder_config(root).data)
    dec, dec_t = sources.build(folder_config(root, **{"data.source": "decoded"}).data)
    for split in ("train", "val", "test"):
        assert len(dec[split]) == len(files[split]) > 0
        for i in range(len(files[split])):
            _equal(dec_t["eval"](dec[split][i]), files_t["eval"](files[split][i]))
    item = dec["train"][0]
    assert item.first == 25 and item.frames.shape[0] == item.n_frames - 48 > 1    # frames 25 .. n - 24
    drawn = set()
    for seed in range(40):
        for i in range(len(files["train"])):
            a = dec_t["train"](dec["train"][i], np.random.default_rng(seed))
            assert a["image"].dtype == np.uint8          # divided by 255 on the devices (parallel.global_batch)
            drawn.add(a["image"].tobytes())
            a["image"] = preprocess.unit_pixels(a["image"])
            _equal(a, files_t["train"](files["train"][i], np.random.default_rng(seed)))
    assert len(drawn) > 40          # different frames, crops and flips were compared


def test_pipelines_give_the_same_batches(folder):
    root, _ = folder
    files, files_t = sources.build(folder_config(root).data)
    dec, dec_t = sources.build(folder_config(root, **{"data.source": "decoded"}).data)
    sent = pickle.loads(pickle.dumps(dec["train"]))     # as grain sends it to a worker process
    assert sent._maps is None
    _equal(dec_t["eval"](sent[1]), dec_t["eval"](dec["train"][1]))
    a = iter(pipeline.train_dataset(files["train"], files_t["train"], batch_size=2, seed=3))
    b = iter(pipeline.train_dataset(dec["train"], dec_t["train"], batch_size=2, seed=3))
    mesh = parallel.make_mesh()
    for _ in range(5):
        x, y = parallel.global_batch(next(a), mesh), parallel.global_batch(next(b), mesh)
        assert y["image"].dtype == np.float32
        _equal(jax.device_get(x), jax.device_get(y))
    for x, y in zip(pipeline.eval_dataset(files["test"], files_t["eval"], batch_size=3, keep_ids=True),
                    pipeline.eval_dataset(dec["test"], dec_t["eval"], batch_size=3, keep_ids=True, workers=2)):
        _equal(x, y)                                    # (read in process whatever the workers)


@pytest.mark.slow
def test_decoded_on_first_use_and_kept(folder, tmp_path):
    root, _ = folder
    config = folder_config(root, **{"data.source": "decoded", "data.decoded_dir": str(tmp_path / "dec")})
    srcs, _ = sources.build(config.data)
    meta = json.load(open(tmp_path / "dec" / "meta.json"))
    assert meta["classes"] == ["cat", "dog"] and meta["splits"] == {s: len(srcs[s]) for s in srcs}
    index = tmp_path / "dec" / "train" / "index.npz"
    before = os.path.getmtime(index)
    sources.build(config.data)
    assert os.path.getmtime(index) == before


@pytest.mark.slow
def test_a_killed_write_redoes_only_the_unfinished_split(folder, tmp_path):
    root, out = folder
    copy = tmp_path / "dec"
    shutil.copytree(out, copy)
    shutil.rmtree(copy / "test")                     # killed while writing the test split:
    os.makedirs(copy / "test.partial")               # its partial folder left, its meta entry not yet written
    meta = json.load(open(copy / "meta.json"))
    del meta["splits"]["test"]
    json.dump(meta, open(copy / "meta.json", "w"))
    train_before = os.path.getmtime(copy / "train" / "index.npz")
    config = folder_config(root, **{"data.source": "decoded", "data.decoded_dir": str(copy)})
    with pytest.raises(decoded.DecodedError, match="split 'test' was not decoded"):
        decoded.DecodedSource(str(copy), "test", sources.preprocess_spec(config.data))
    decoded.write(config.data, sources.preprocess_spec(config.data), progress=False)
    assert os.path.getmtime(copy / "train" / "index.npz") == train_before
    assert not os.path.exists(copy / "test.partial")
    for name in ("eval_images.u8", "audio.f32", "index.npz"):
        assert open(copy / "test" / name, "rb").read() == open(os.path.join(out, "test", name), "rb").read()


def test_bad_folders_are_named(folder, tmp_path):
    root, out = folder
    spec = sources.preprocess_spec(folder_config(root).data)
    copy = tmp_path / "dec"
    shutil.copytree(out, copy)
    audio = copy / "train" / "audio.f32"
    os.truncate(audio, os.path.getsize(audio) - 4)
    with pytest.raises(decoded.DecodedError, match=f"{audio}: .* bytes, the index says"):
        decoded.DecodedSource(str(copy), "train", spec)
    other = sources.preprocess_spec(folder_config(root, **{"data.preprocess.image_size": 48}).data)
    with pytest.raises(decoded.DecodedError, match="meta.json: decoded for .*image_size': 32"):
        decoded.DecodedSource(out, "val", other)
    val = decoded.DecodedSource(out, "val", spec)
    with pytest.raises(decoded.DecodedError, match=r"val\[0\] .*eval images only"):
        decoded.load_example(val[0], True, np.random.default_rng(0), spec)
    with pytest.raises(decoded.DecodedError, match="needs config.data.decoded_dir or config.data.root"):
        sources.build(experiment.load_config(os.path.join(REPO, "configs", "ave.py"),
                                             **{"data.source": "decoded"}).data)


def test_unreadable_media_raise_or_are_skipped(folder, tmp_path):
    root, _ = folder
    copy = tmp_path / "prepared"
    shutil.copytree(root, copy)
    config = folder_config(copy, **{"data.source": "decoded"})
    row = layout_a.build(config.data, sources.preprocess_spec(config.data))[0]["test"].rows[0]
    bad = layout_a.frame_path(row.frames, row.n_frames // 2)
    open(bad, "wb").write(b"not a jpeg")
    spec = sources.preprocess_spec(config.data)
    with pytest.raises(Exception, match=f"{bad}: unreadable image"):
        decoded.write(config.data, spec, str(tmp_path / "raise"), progress=False)
    skip = folder_config(copy, **{"data.source": "decoded", "data.on_error": "skip"})
    out = decoded.write(skip.data, spec, str(tmp_path / "skip"), progress=False)
    n_test = len(layout_a.build(config.data, spec)[0]["test"])
    assert json.load(open(os.path.join(out, "meta.json")))["splits"]["test"] == n_test - 1


def test_the_source_is_not_part_of_the_training_trajectory(folder):
    """A run trained from the files resumes from the decoded format (and back): same examples, same hash."""
    from avjax.train.loop import training_config_hash
    root, _ = folder
    files = folder_config(root)
    dec = folder_config(root, **{"data.source": "decoded", "data.decoded_dir": "/elsewhere"})
    assert training_config_hash(files) == training_config_hash(dec)
    assert training_config_hash(files) != training_config_hash(folder_config(root, **{"data.preprocess.fps": 4}))


def test_the_command_decodes_a_config_s_dataset(folder, tmp_path):
    root, out = folder
    proc = subprocess.run(
        [sys.executable, "-m", "avjax.data.decoded", f"--config={os.path.join(REPO, 'configs', 'folder.py')}",
         f"--config.data.root={root}", f"--config.data.decoded_dir={tmp_path / 'dec'}",
         "--config.data.preprocess.image_size=32", "--workers=1"],
        capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"decoded into {tmp_path / 'dec'}; train with --config.data.source=decoded" in proc.stdout
    for split in ("train", "val", "test"):
        for name in ("eval_images.u8", "audio.f32"):
            written = open(tmp_path / "dec" / split / name, "rb").read()
            assert written == open(os.path.join(out, split, name), "rb").read()


def test_pixels_become_the_host_s_floats_on_the_devices():
    """uint8 -> float32 in parallel.global_batch equals preprocess.unit_pixels for every value (XLA's x / 255 does
    not: it multiplies by 1 / 255)."""
    pixels = np.arange(256 * 3, dtype=np.int64).reshape(4, 8, 8, 3) % 256
    batch = {"image": pixels.astype(np.uint8), "label": np.arange(4, dtype=np.int32)}
    out = jax.device_get(parallel.global_batch(batch, parallel.make_mesh()))
    assert out["image"].dtype == np.float32
    assert np.array_equal(out["image"], preprocess.unit_pixels(batch["image"]))


def test_the_write_refuses_to_start_without_the_disk_space(folder, tmp_path, monkeypatch):
    root, _ = folder
    config = folder_config(root, **{"data.source": "decoded"})
    spec = sources.preprocess_spec(config.data)
    rows = layout_a.build(config.data, spec)[0]["train"].rows
    need = decoded.estimate_bytes(rows, spec, True)
    frames = sum(hi - lo + 1 for lo, hi in (decoded.train_frame_range(r.n_frames, spec) for r in rows))
    assert need > frames * 35 * 46 * 3                      # at least the train frames (35 x 46 after resizing)
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(decoded.shutil, "disk_usage", lambda path: usage._replace(free=need // 2))
    with pytest.raises(decoded.DecodedError, match=r"need about .* [GM]B, .* [GM]B are free"):
        decoded.write(config.data, spec, str(tmp_path / "dec"), progress=False)
    assert not os.path.exists(tmp_path / "dec" / "train")


def test_a_folder_decoded_from_other_rows_is_refused_then_redone(folder, tmp_path):
    """Another CSV list with the same root must not read the examples decoded from the earlier list."""
    root, out = folder
    copy_root = tmp_path / "prepared"
    shutil.copytree(root, copy_root)
    config = folder_config(copy_root, **{"data.source": "decoded"})
    srcs, _ = sources.build(config.data)                     # the copied folder's decoded format: accepted
    lines = open(copy_root / "test.csv").read().splitlines()
    open(copy_root / "test.csv", "w").write("\n".join(lines[1:]) + "\n")
    with pytest.raises(decoded.DecodedError, match="test split was decoded from other rows than the 1 the config"):
        sources.build(config.data)
    train_before = os.path.getmtime(copy_root / "decoded" / "train" / "index.npz")
    decoded.write(config.data, sources.preprocess_spec(config.data), progress=False)   # redoes the test split
    srcs, _ = sources.build(config.data)
    assert len(srcs["test"]) == 1 and os.path.getmtime(copy_root / "decoded" / "train" / "index.npz") == train_before
    with config.unlocked():
        config.data.classes = ("cat", "cow")
    with pytest.raises(decoded.DecodedError, match="decoded for the classes"):
        decoded.check_matches(str(copy_root / "decoded"), config.data, sources.preprocess_spec(config.data))
