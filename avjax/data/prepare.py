"""`prepare`: turn a class-folder video tree (B), an official distribution (C) or a JSONL manifest (D)
into layout A (wav + %06d.jpg folders + the authors' CSVs), in parallel and resumably.

    python -m avjax.data.prepare --out DIR (--videos ROOT | --ave-root DIR | --music-json F
        --music-videos DIR | --k400-root DIR | --manifest F.jsonl) [--preset ave|music|kinetics_sounds]
        [--authors-lists DIR [--dedupe]] [--workers N] [--on-error raise|skip] [--split-seed S]

Frames are decoded with PyAV at 8 fps (as `ffmpeg -r 8`) and written as JPEG; audio becomes 11025 Hz
mono 16-bit wav. An item whose outputs are complete (a `.done` marker is written last) is skipped on a
rerun. Splits come from the authors' lists when given (exact IDs and the authors' single label for
AVE's multi-label videos; each split CSV replays the authors' rows, their repeats and the IDs they list in
two splits included, and the run reports those; `--dedupe` drops them), else from the source (AVE *Set.txt, K400 split column, manifest), else a
seeded 60/20/20 split. A count table per class and split closes the run (compare with docs/data.md).
"""
import argparse
import collections
import concurrent.futures
import csv
import dataclasses
import glob
import json
import multiprocessing
import os
import sys

import numpy as np

from avjax.data import layout_a, media

VIDEO_EXTS = (".mp4", ".mkv", ".webm", ".avi", ".mov")


@dataclasses.dataclass(frozen=True)
class Item:
    """One video to prepare: where it is, its class folder name, split and ID."""

    video: str | None
    label: str
    split: str
    id: str
    audio: str | None = None     # manifest items may come pre-extracted
    frames: str | None = None
    n_frames: int | None = None


# ------------------------------------------------------------------------------------- adapters

def _norm_label(label):
    return label.strip().replace(" ", "_")


def _authors_choice(vid, label, split, split_of):
    """(label, split) from the authors' lists when given (None: the video is not in them)."""
    if split_of is None:
        return label, split
    return split_of.get(vid)


def _seeded_split(ids, seed, fractions=(0.6, 0.2, 0.2)):
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ids))
    n_train, n_val = int(round(fractions[0] * len(ids))), int(round(fractions[1] * len(ids)))
    split = {}
    for rank, idx in enumerate(order):
        split[ids[idx]] = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
    return split


def authors_rows(directory, preset) -> dict:
    """{split: [(class, id), ...]}: the authors' CSVs row by row, in their order, repeats included."""
    out = {}
    for split, name in layout_a.CSV_NAMES[preset].items():
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: the authors' {split} list is missing")
        with open(path, newline="") as f:
            out[split] = []
            for fields in csv.reader(f):
                cls, stem = fields[0].lstrip("/").split("/")[:2]
                out[split].append((cls, stem[: -len(".wav")]))
    return out


def authors_lists(directory, preset):
    """{id: (class, split)} from the authors' CSVs: what each video is prepared as (the first row of a
    repeated ID wins; the split CSVs then replay every row, see `prepare`)."""
    out, classes = {}, collections.defaultdict(set)
    for split, rows in authors_rows(directory, preset).items():
        for cls, vid in rows:
            out.setdefault(vid, (cls, split))
            classes[vid].add(cls)
    mixed = sorted(v for v, c in classes.items() if len(c) > 1)
    if mixed:
        raise ValueError(f"{directory}: IDs listed under several classes ({mixed[:5]}...): not supported")
    return out


def list_issues(replay) -> dict:
    """Rows repeating an ID within a split, and IDs listed in more than one split (leaks)."""
    repeats = {split: len(rows) - len({vid for _, vid in rows}) for split, rows in replay.items()}
    splits = collections.defaultdict(list)
    for split, rows in replay.items():
        for _, vid in rows:
            if split not in splits[vid]:
                splits[vid].append(split)
    leaks = {vid: s for vid, s in splits.items() if len(s) > 1}
    return {"repeated_rows": repeats, "leaks": leaks}


def issues_summary(issues, dedupe) -> str:
    repeats = ", ".join(f"{s} {n}" for s, n in issues["repeated_rows"].items() if n) or "none"
    leaks = issues["leaks"]
    example = ", ".join(f"{v} ({'+'.join(s)})" for v, s in list(leaks.items())[:3])
    action = ("dropped (--dedupe): a split keeps one row per ID, and an ID only in its first split" if dedupe else
              "kept as the authors have them (--dedupe drops them)")
    return (f"authors' lists: rows repeating an ID within a split: {repeats}; IDs in more than one split: "
            f"{len(leaks)}{' (e.g. ' + example + ')' if leaks else ''}; {action}")


def items_from_class_tree(root, split_of=None, seed=0):
    """B: `<root>/<Class>/<ID>.<ext>`."""
    videos = sorted(p for p in glob.glob(os.path.join(root, "*", "*")) if p.lower().endswith(VIDEO_EXTS))
    if not videos:
        raise FileNotFoundError(f"{root}: no <Class>/<ID>.mp4 videos found")
    ids = [os.path.splitext(os.path.basename(v))[0] for v in videos]
    seeded = _seeded_split(ids, seed)
    items = []
    for video, vid in zip(videos, ids):
        choice = _authors_choice(vid, _norm_label(os.path.basename(os.path.dirname(video))),
                                 seeded[vid], split_of)
        if choice is not None:
            items.append(Item(video, *choice, vid))
    return items


def parse_ave_lines(path):
    """AVE `Category&VideoID&Quality&Start&End` lines: optional header, BOM and CRLF accepted."""
    rows = []
    with open(path, encoding="utf-8-sig", newline="") as f:
        for line_no, line in enumerate(f, start=1):
            line = line.strip("\r\n")
            if not line.strip():
                continue
            fields = line.split("&")
            if len(fields) != 5:
                raise ValueError(f"{path}:{line_no}: expected 5 '&'-separated fields, got {len(fields)}")
            if line_no == 1 and fields[0] == "Category":
                continue
            rows.append(fields)
    return rows


AVE_CATEGORY_TO_FOLDER = {
    "Church bell": "Church_bell", "Male speech, man speaking": "Male_speech", "Bark": "Bark",
    "Fixed-wing aircraft, airplane": "airplane", "Race car, auto racing": "Race_car",
    "Female speech, woman speaking": "Female_speech", "Helicopter": "Helicopter",
    "Violin, fiddle": "Violin", "Flute": "Flute", "Ukulele": "Ukulele", "Frying (food)": "Frying",
    "Truck": "Truck", "Shofar": "Shofar", "Motorcycle": "Motorcycle", "Chainsaw": "Chainsaw",
    "Acoustic guitar": "Acoustic_guitar", "Train horn": "Train_horn", "Clock": "Clock",
    "Banjo": "Banjo", "Goat": "Goat", "Baby cry, infant cry": "Baby_cry", "Bus": "Bus", "Cat": "Cat",
    "Horse": "Horse", "Toilet flush": "Toilet_flush", "Rodents, rats, mice": "Rodents",
    "Accordion": "Accordion", "Mandolin": "Mandolin",
}


def items_from_ave(root, split_of=None):
    """C: the official AVE zip (`AVE/<id>.mp4` flat, `trainSet.txt` / `valSet.txt` / `testSet.txt`)."""
    video_dir = os.path.join(root, "AVE") if os.path.isdir(os.path.join(root, "AVE")) else root
    items, seen = [], set()
    for split in ("train", "val", "test"):
        path = os.path.join(root, f"{split}Set.txt")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: AVE split file missing")
        for category, vid, *_ in parse_ave_lines(path):
            if category not in AVE_CATEGORY_TO_FOLDER:
                raise ValueError(f"{path}: unknown AVE category {category!r}")
            choice = _authors_choice(vid, AVE_CATEGORY_TO_FOLDER[category], split, split_of)
            if choice is None or (vid,) + choice in seen:
                continue
            seen.add((vid,) + choice)
            items.append(Item(os.path.join(video_dir, f"{vid}.mp4"), *choice, vid))
    return items


def items_from_music(json_path, video_dir, split_of=None, seed=0):
    """C: MUSIC_solo_videos.json + downloaded videos (flat or per instrument)."""
    with open(json_path) as f:
        spec = json.load(f)["videos"]
    found = {os.path.splitext(os.path.basename(p))[0]: p for p in glob.glob(
        os.path.join(video_dir, "**", "*"), recursive=True) if p.lower().endswith(VIDEO_EXTS)}
    pairs = [(label, vid) for label, vids in spec.items() for vid in vids]
    seeded = _seeded_split([vid for _, vid in pairs], seed)
    items = []
    for label, vid in pairs:
        choice = _authors_choice(vid, _norm_label(label), seeded[vid], split_of)
        if choice is not None:
            items.append(Item(found.get(vid, os.path.join(video_dir, f"{vid}.mp4")), *choice, vid))
    return items


def items_from_k400(root, split_of=None, classes=None):
    """C: CVDF Kinetics-400 (`<split>/<ytid>_<start>_<end>.mp4`, annotations/<split>.csv)."""
    items = []
    wanted = set(classes) if classes else None
    videos = {}
    for p in glob.glob(os.path.join(root, "**", "*.mp4"), recursive=True):
        videos.setdefault(os.path.basename(p)[:11], p)
    for split_name in ("train", "val", "test"):
        ann = os.path.join(root, "annotations", f"{split_name}.csv")
        if not os.path.isfile(ann):
            continue
        with open(ann, newline="") as f:
            for rec in csv.DictReader(f):
                vid, label = rec["youtube_id"], _norm_label(rec["label"])
                split = {"validate": "val"}.get(rec.get("split", split_name), rec.get("split", split_name))
                choice = _authors_choice(vid, label, split, split_of)
                if choice is None or (split_of is None and wanted is not None and label not in wanted):
                    continue
                items.append(Item(videos.get(vid, os.path.join(root, split_name, f"{vid}.mp4")),
                                  *choice, vid))
    if not items:
        raise FileNotFoundError(f"{root}: no annotations/{{train,val,test}}.csv rows matched")
    return items


def items_from_manifest(path):
    """D: JSONL lines {"video" | "audio" + "frames", "label", "split", "n_frames"?, "id"?}. Relative media
    paths are relative to the manifest's folder (not to the working directory)."""
    folder = os.path.dirname(os.path.abspath(path))
    resolve = lambda p: p if p is None or os.path.isabs(p) else os.path.join(folder, p)  # noqa: E731
    items = []
    with open(path) as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{line_no}: not JSON ({e})") from e
            missing = [k for k in ("label", "split") if k not in rec]
            if missing or not ("video" in rec or ("audio" in rec and "frames" in rec)):
                raise ValueError(f"{path}:{line_no}: needs label, split and video (or audio + frames)")
            src = rec.get("video") or rec["audio"]
            vid = rec.get("id") or os.path.splitext(os.path.basename(src))[0]
            items.append(Item(resolve(rec.get("video")), _norm_label(rec["label"]), rec["split"], vid,
                              resolve(rec.get("audio")), resolve(rec.get("frames")), rec.get("n_frames")))
    return items


# -------------------------------------------------------------------------------------- workers

def _outputs(out, item):
    return (os.path.join(out, "audio", item.label, f"{item.id}.wav"),
            os.path.join(out, "frames", item.label, f"{item.id}.mp4"))


def prepare_item(item: Item, out: str, fps: int = media.VIDEO_FPS, rate: int = media.AUDIO_RATE,
                 jpeg_quality: int = 95) -> tuple[Item, int, bool]:
    """Write one item's wav and frames; -> (item, n_frames, skipped_because_done)."""
    import soundfile as sf
    from PIL import Image

    wav_path, frame_dir = _outputs(out, item)
    done = os.path.join(frame_dir, ".done")
    if os.path.isfile(done):
        with open(done) as f:
            return item, int(f.read().strip()), True
    if item.video is not None:
        wave = media.video_audio(item.video, rate)
        frames = media.video_frames(item.video, fps)
    else:
        wave = media.read_audio(item.audio, rate)
        names = sorted(n for n in os.listdir(item.frames) if n.lower().endswith((".jpg", ".png")))
        if not names:
            raise media.MediaError(f"{item.frames}: no jpg/png frames")
        frames = (media.read_image(os.path.join(item.frames, n)) for n in names)
    if wave.size == 0 or not np.any(wave):
        raise media.MediaError(f"{item.video or item.audio}: silent or empty audio track")
    os.makedirs(os.path.dirname(wav_path), exist_ok=True)
    os.makedirs(frame_dir, exist_ok=True)
    n = 0
    for n, pixels in enumerate(frames, start=1):
        Image.fromarray(pixels).save(os.path.join(frame_dir, f"{n:06d}.jpg"), quality=jpeg_quality)
    if n == 0:
        raise media.MediaError(f"{item.video}: no frames decoded")
    sf.write(wav_path, np.clip(wave, -1, 1), rate, subtype="PCM_16")
    with open(done, "w") as f:
        f.write(str(n))
    return item, n, False


def prepare(items, out, *, workers=1, on_error="raise", csv_names=None, progress=True, replay=None, dedupe=False):
    """Prepare every item; write the split CSVs; -> (rows per split, SkipReport, counts).

    `replay` ({split: [(class, id), ...]}, the authors' rows): each split CSV repeats those rows in
    their order, repeats and cross-split IDs included (so the splits are exactly the authors'), for
    the IDs that were prepared; `dedupe` keeps one row per ID, in its first split only."""
    from tqdm import tqdm

    csv_names = csv_names or {"train": "train.csv", "val": "val.csv", "test": "test.csv"}
    os.makedirs(out, exist_ok=True)
    report = layout_a.SkipReport()
    results = {}
    # spawn, not fork: the parent may run JAX threads, and a forked copy of them can deadlock
    pool = (concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
            if workers > 1 else None)
    try:
        futures = {}
        for item in items:
            if pool is None:
                futures[item] = None
            else:
                futures[item] = pool.submit(prepare_item, item, out)
        for item in tqdm(list(futures), desc="prepare", unit="video", disable=not progress):
            try:
                fut = futures[item]
                results[item] = (fut.result() if fut is not None else prepare_item(item, out))[1]
            except (media.MediaError, OSError, ValueError) as e:
                if on_error != "skip":
                    raise
                report.add(item.video or item.audio, str(e))
    finally:
        if pool is not None:
            pool.shutdown()
    rows = collections.defaultdict(list)
    counts = collections.Counter()
    line = lambda item, n: f"/{item.label}/{item.id}.wav,/{item.label}/{item.id}.mp4,{n}"  # noqa: E731
    if replay is None:
        for item, n in results.items():
            rows[item.split].append(line(item, n))
            counts[(item.label, item.split)] += 1
    else:
        prepared = {item.id: (item, n) for item, n in results.items()}
        seen = set()
        for split in ("train", "val", "test"):
            for _, vid in replay.get(split, []):
                if vid not in prepared or (dedupe and vid in seen):
                    continue
                seen.add(vid)
                item, n = prepared[vid]
                rows[split].append(line(item, n))
                counts[(item.label, split)] += 1
    for split, name in csv_names.items():
        with open(os.path.join(out, name), "w") as f:
            f.write("".join(r + "\n" for r in rows.get(split, [])))
    return rows, report, counts


def count_table(counts) -> str:
    labels = sorted({label for label, _ in counts})
    lines = ["| class | train | val | test |", "|---|---|---|---|"]
    for label in labels:
        lines.append(f"| {label} | " + " | ".join(str(counts.get((label, s), 0))
                                                  for s in ("train", "val", "test")) + " |")
    totals = [sum(v for (_, s), v in counts.items() if s == split) for split in ("train", "val", "test")]
    lines.append("| **total** | " + " | ".join(map(str, totals)) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m avjax.data.prepare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--videos", help="B: <root>/<Class>/<ID>.mp4")
    src.add_argument("--ave-root", help="C: unzipped AVE_Dataset/")
    src.add_argument("--music-json", help="C: MUSIC_solo_videos.json (with --music-videos)")
    src.add_argument("--k400-root", help="C: CVDF k400/ with annotations/")
    src.add_argument("--manifest", help="D: JSONL manifest")
    p.add_argument("--music-videos")
    p.add_argument("--preset", choices=sorted(layout_a.CLASSES), help="class list / CSV names")
    p.add_argument("--authors-lists", help="folder with the authors' CSVs: take IDs, labels and splits from them "
                                           "(each split exactly as listed: repeated rows and IDs in two splits kept)")
    p.add_argument("--dedupe", action="store_true", help="with --authors-lists: one row per ID, in its first split")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--on-error", choices=("raise", "skip"), default="raise")
    p.add_argument("--split-seed", type=int, default=0)
    a = p.parse_args(argv)
    if a.authors_lists and not a.preset:
        p.error("--authors-lists needs --preset (which CSVs to read)")
    split_of = authors_lists(a.authors_lists, a.preset) if a.authors_lists else None
    replay = authors_rows(a.authors_lists, a.preset) if a.authors_lists else None
    if a.videos:
        items = items_from_class_tree(a.videos, split_of, a.split_seed)
    elif a.ave_root:
        items = items_from_ave(a.ave_root, split_of)
    elif a.music_json:
        if not a.music_videos:
            p.error("--music-json needs --music-videos")
        items = items_from_music(a.music_json, a.music_videos, split_of, a.split_seed)
    elif a.k400_root:
        classes = layout_a.CLASSES["kinetics_sounds"] if a.preset == "kinetics_sounds" else None
        items = items_from_k400(a.k400_root, split_of, classes)
    else:
        items = items_from_manifest(a.manifest)
    if a.preset:
        unknown = sorted({i.label for i in items} - set(layout_a.CLASSES[a.preset]))
        if unknown:
            print(f"error: classes not in preset {a.preset}: {unknown}", file=sys.stderr)
            return 2
    names = layout_a.CSV_NAMES.get(a.preset) if a.preset else None
    rows, report, counts = prepare(items, a.out, workers=a.workers, on_error=a.on_error, csv_names=names,
                                   replay=replay, dedupe=a.dedupe)
    print(count_table(counts))
    if replay is not None:
        print(issues_summary(list_issues(replay), a.dedupe))
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
