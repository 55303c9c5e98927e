"""Layout A reading and validation, the prepare command (B, C, D -> A) and the spec's preprocessing."""
import json
import os

import numpy as np
import pytest

from avjax.configs.base import base_config
from avjax.data import layout_a, media, pipeline, prepare, preprocess, sources
from tests.data import fixtures

CLASSES = ("dog", "cat")
PAPER = sources.preprocess_spec(base_config().data)
SMALL = sources.preprocess_spec(base_config().data, image_size=32, audio_len=4095)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A class-folder tree of real mp4s, prepared into layout A with a seeded split."""
    root = tmp_path_factory.mktemp("videos")
    for cls, colour, hz in (("dog", (200, 40, 40), 300.0), ("cat", (40, 40, 200), 900.0)):
        os.makedirs(root / cls)
        for i in range(5):
            fixtures.make_video(root / cls / f"{cls}{i:02d}.mp4", seconds=1.5, fps=16, colour=colour,
                                tone_hz=hz)
    out = tmp_path_factory.mktemp("layout_a")
    items = prepare.items_from_class_tree(str(root), seed=0)
    rows, report, counts = prepare.prepare(items, str(out), workers=2, progress=False)
    return root, out, items, rows, counts


@pytest.mark.slow
def test_prepare_writes_layout_a_and_counts(prepared):
    _, out, items, rows, counts = prepared
    assert sum(counts.values()) == 10 and {s for _, s in counts} <= {"train", "val", "test"}
    table = prepare.count_table(counts)
    assert "| dog |" in table and "| **total** |" in table
    line = open(out / "train.csv").read().splitlines()[0]
    audio, frames, n = line.split(",")
    assert audio.startswith("/") and audio.endswith(".wav") and frames.endswith(".mp4")
    assert int(n) == 12  # 1.5 s at 8 fps
    assert os.path.isfile(os.path.join(out, "frames", frames.lstrip("/"), "000012.jpg"))


def test_prepare_is_resumable(prepared):
    _, out, items, _, _ = prepared
    marker = os.path.join(out, "frames", items[0].label, f"{items[0].id}.mp4", ".done")
    before = os.path.getmtime(marker)
    _, n, skipped = prepare.prepare_item(items[0], str(out))
    assert skipped and n == 12 and os.path.getmtime(marker) == before


def test_round_trip_to_a_model_ready_batch(prepared):
    _, out, _, _, _ = prepared
    rows = layout_a.read_rows(out / "train.csv", CLASSES, out / "audio", out / "frames")
    source = layout_a.LayoutASource(rows)
    train = lambda row, rng: layout_a.load_example(row, True, rng, SMALL)  # noqa: E731
    batch = next(iter(pipeline.train_dataset(source, train, batch_size=2, seed=0)))
    assert batch["image"].shape == (2, 32, 32, 3) and batch["audio"].shape == (2, 4095)
    assert batch["image"].dtype == np.float32 and 0 <= batch["image"].min() and batch["image"].max() <= 1
    assert np.abs(batch["audio"]).max() <= 1
    ex = layout_a.load_example(rows[0], False, None, SMALL)
    red = ex["image"][..., 0].mean() > ex["image"][..., 2].mean()
    assert red == (rows[0].label == CLASSES.index("dog"))
    hz = fixtures.peak_hz(ex["audio"][ex["audio"] != 0], 11025)
    assert abs(hz - (300 if rows[0].label == 0 else 900)) < 10


def _write_csv(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


@pytest.mark.parametrize("line,message", [
    ("/dog/dog00.wav,/dog/dog00.mp4", "expected 3 columns"),
    ("/horse/dog00.wav,/horse/dog00.mp4,12", "class 'horse' is not in"),
    ("/dog/dog00.wav,/dog/dog00.mp4,99", "n_frames 99 but"),
    ("/dog/nothere.wav,/dog/dog00.mp4,12", "nothere.wav does not exist"),
    ("/dog/dog00.wav,/dog/dog00.mp4,twelve", "is not an integer"),
])
def test_bad_rows_raise_or_are_skipped_and_counted(prepared, tmp_path, line, message):
    _, out, items, _, _ = prepared
    dog = next(i for i in items if i.id == "dog00")
    assert dog.label == "dog"
    good = "/dog/dog00.wav,/dog/dog00.mp4,12"
    csv_path = _write_csv(tmp_path / "x.csv", [good, line])
    with pytest.raises(layout_a.DataError, match=message) as e:
        layout_a.read_rows(csv_path, CLASSES, out / "audio", out / "frames")
    assert "x.csv:2" in str(e.value)
    report = layout_a.SkipReport()
    rows = layout_a.read_rows(csv_path, CLASSES, out / "audio", out / "frames", on_error="skip",
                              report=report)
    assert len(rows) == 1 and len(report.items) == 1 and "1 example(s) skipped" in report.summary()


def test_zero_length_wav_and_corrupt_jpg(prepared, tmp_path):
    _, out, _, _, _ = prepared
    (tmp_path / "audio" / "dog").mkdir(parents=True)
    (tmp_path / "audio" / "dog" / "z.wav").write_bytes(b"")
    frames = tmp_path / "frames" / "dog" / "z.mp4"
    frames.mkdir(parents=True)
    (frames / "000001.jpg").write_bytes(b"broken")
    csv_path = _write_csv(tmp_path / "z.csv", ["/dog/z.wav,/dog/z.mp4,1"])
    with pytest.raises(layout_a.DataError, match="z.wav is empty"):
        layout_a.read_rows(csv_path, CLASSES, tmp_path / "audio", tmp_path / "frames")
    fixtures.write_wav(tmp_path / "audio" / "dog" / "z.wav", seconds=0.5)
    rows = layout_a.read_rows(csv_path, CLASSES, tmp_path / "audio", tmp_path / "frames")
    with pytest.raises(media.MediaError, match="000001.jpg: unreadable image"):
        layout_a.load_example(rows[0], False, None, SMALL)
    # skip mode: the example is dropped from the stream instead of becoming zeros
    source = layout_a.LayoutASource(rows * 1)
    ev = pipeline.eval_dataset(source, lambda r: layout_a.load_example(r, False, None, SMALL),
                               batch_size=2, on_error="skip")
    assert list(ev) == []


def test_prepare_errors_name_the_video(tmp_path):
    root = tmp_path / "v"
    (root / "dog").mkdir(parents=True)
    fixtures.make_video(root / "dog" / "mute.mp4", seconds=1.0, with_audio=False)
    items = prepare.items_from_class_tree(str(root))
    with pytest.raises(media.MediaError, match="mute.mp4: no audio track"):
        prepare.prepare(items, str(tmp_path / "out"), progress=False)
    _, report, counts = prepare.prepare(items, str(tmp_path / "out"), on_error="skip", progress=False)
    assert len(report.items) == 1 and sum(counts.values()) == 0


def test_ave_lines_with_header_bom_and_crlf(tmp_path):
    path = tmp_path / "trainSet.txt"
    path.write_bytes("\ufeffCategory&VideoID&Quality&StartTime&EndTime\r\n"
                     "Church bell&RUhOCu3LNXM&good&0&10\r\n".encode("utf-8"))
    assert prepare.parse_ave_lines(path) == [["Church bell", "RUhOCu3LNXM", "good", "0", "10"]]
    path.write_text("Church bell&x&good\n")
    with pytest.raises(ValueError, match="trainSet.txt:1: expected 5"):
        prepare.parse_ave_lines(path)


def test_manifest_and_k400_adapters(tmp_path):
    m = tmp_path / "m.jsonl"
    m.write_text(json.dumps({"video": "/x/a.mp4", "label": "tap dancing", "split": "train"}) + "\n")
    (item,) = prepare.items_from_manifest(m)
    assert item.label == "tap_dancing" and item.id == "a"
    # relative media paths are relative to the manifest's folder, whatever the working directory
    (tmp_path / "sub").mkdir()
    rel = tmp_path / "sub" / "rel.jsonl"
    rel.write_text(json.dumps({"audio": "wav/b.wav", "frames": "../f/b.mp4", "label": "yoga", "split": "test"}) + "\n")
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        (item,) = prepare.items_from_manifest("sub/rel.jsonl")
    finally:
        os.chdir(cwd)
    assert item.audio == str(tmp_path / "sub" / "wav" / "b.wav")
    assert os.path.normpath(item.frames) == str(tmp_path / "f" / "b.mp4") and item.video is None
    m.write_text('{"label": "x"}\n')
    with pytest.raises(ValueError, match="m.jsonl:1"):
        prepare.items_from_manifest(m)
    k = tmp_path / "k400"
    (k / "annotations").mkdir(parents=True)
    (k / "train").mkdir()
    (k / "train" / "abcdefghijk_000010_000020.mp4").write_bytes(b"")
    (k / "annotations" / "train.csv").write_text(
        "label,youtube_id,time_start,time_end,split\nplaying drums,abcdefghijk,10,20,train\n"
        "yoga,zzzzzzzzzzz,0,10,train\n")
    items = prepare.items_from_k400(str(k), classes=layout_a.CLASSES["kinetics_sounds"])
    assert [(i.label, i.id) for i in items] == [("playing_drums", "abcdefghijk")]
    assert items[0].video.endswith("abcdefghijk_000010_000020.mp4")


def test_authors_lists_give_ids_labels_and_splits():
    lists = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "original_lists")
    if not os.path.isdir(lists):
        pytest.skip("the authors' lists are not present")
    ave = prepare.authors_lists(lists, "ave")
    assert ave["EsfJpLbBeb4"] == ("Church_bell", "test")
    music = prepare.authors_lists(lists, "music")
    assert len(music) == 520
    assert sum(split == "train" for _, split in music.values()) == 312
    rows = layout_a.read_rows(os.path.join(lists, "train_AVE.csv"), layout_a.CLASSES["ave"], "/a", "/f",
                              check_files=False)
    assert len(rows) == 3339  # duplicates kept, as the original
    replay = prepare.authors_rows(lists, "ave")
    assert {k: len(v) for k, v in replay.items()} == {"train": 3339, "val": 402, "test": 402}
    issues = prepare.list_issues(replay)
    assert issues["repeated_rows"] == {"train": 27, "val": 1, "test": 0} and len(issues["leaks"]) == 18


def test_authors_lists_are_replayed_exactly_and_their_issues_flagged(tmp_path, capsys):
    """Repeated rows and an ID in two splits are kept as the authors list them (and reported);
    --dedupe drops them."""
    videos, lists = tmp_path / "videos", tmp_path / "lists"
    for cls, vid in (("Church_bell", "v0"), ("Church_bell", "v1"), ("Bark", "v2"), ("Bark", "v3")):
        os.makedirs(videos / cls, exist_ok=True)
        fixtures.make_video(videos / cls / f"{vid}.mp4", seconds=1.0, fps=8, size=(40, 32))
    os.makedirs(lists)
    authors = {"train": ["Church_bell/v0", "Church_bell/v1", "Church_bell/v0"],
               "val": ["Bark/v2", "Church_bell/v1"], "test": ["Bark/v3"]}
    for split, name in layout_a.CSV_NAMES["ave"].items():
        (lists / name).write_text("".join(f"/{r}.wav,/{r}.mp4,8\n" for r in authors[split]))

    def written(out):
        return {split: [line.split(",")[0] for line in open(out / name).read().splitlines()]
                for split, name in layout_a.CSV_NAMES["ave"].items()}

    common = ["--videos", str(videos), "--authors-lists", str(lists), "--preset", "ave", "--workers", "1"]
    assert prepare.main(common + ["--out", str(tmp_path / "exact")]) == 0
    assert written(tmp_path / "exact") == {s: [f"/{r}.wav" for r in rows] for s, rows in authors.items()}
    report = capsys.readouterr().out
    assert "rows repeating an ID within a split: train 1" in report and "IDs in more than one split: 1" in report
    assert "| Church_bell | 3 | 1 | 0 |" in report        # the count table counts the rows as listed
    assert prepare.main(common + ["--out", str(tmp_path / "dedupe"), "--dedupe"]) == 0
    assert written(tmp_path / "dedupe") == {"train": ["/Church_bell/v0.wav", "/Church_bell/v1.wav"],
                                            "val": ["/Bark/v2.wav"], "test": ["/Bark/v3.wav"]}


def test_preprocessing_follows_the_original():
    spec = PAPER
    rng = np.random.default_rng(0)
    picks = [preprocess.centre_frame(82, True, rng, spec) for _ in range(2000)]
    assert min(picks) == 25 and max(picks) == 58     # randint(25, n - 24)
    assert preprocess.centre_frame(82, False, None, spec) == 41
    wave = np.arange(1, 200001, dtype=np.float32) / 200001
    out = preprocess.audio_window(wave, 41, spec)
    c = int((41 - 0.5) / 8 * 11025)
    assert out.shape == (65535,) and out[32767] == wave[c] and out[-1] == 0 and out[0] == wave[c - 32767]
    short = preprocess.audio_window(np.ones(1000, np.float32), 1, spec)  # tiled, then zero-padded left
    c = int(0.5 / 8 * 11025)
    assert np.all(short[: 32767 - c] == 0) and np.all(short[32767 - c: -1] == 1)
    img = (np.random.default_rng(1).uniform(0, 255, (300, 400, 3))).astype(np.uint8)
    ev = preprocess.image_transform(img, False, None, spec)
    tr = preprocess.image_transform(img, True, np.random.default_rng(2), spec)
    assert ev.shape == tr.shape == (224, 224, 3) and ev.max() <= 1


def test_exactly_pads_a_short_shard_with_masked_batches():
    batches = [{"label": np.arange(2), "mask": np.ones(2, np.float32)}]
    out = list(pipeline.exactly(batches, 3))
    assert len(out) == 3 and out[0]["mask"].sum() == 2 and out[1]["mask"].sum() == 0 == out[2]["mask"].sum()
    with pytest.raises(ValueError, match="empty"):
        list(pipeline.exactly([], 1))
