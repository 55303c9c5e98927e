"""Layout A, the authors' pre-extracted format: `<audio_root>/<Class>/<ID>.wav`,
`<frames_root>/<Class>/<ID>.mp4/%06d.jpg` (a folder, 1-based) and CSV rows
`/<Class>/<ID>.wav,/<Class>/<ID>.mp4,<n_frames>` (no header).

The label is the index of the row's class folder in the dataset's class order (presets below).
Rows are validated when the source is built (column count, class, wav present and non-empty, frame
folder holding at least n_frames jpgs); decoding errors surface when an example is read. Each problem
raises an error naming the CSV row or the file, or - with `on_error='skip'` - the example is dropped
and counted in a report.
"""
import collections
import csv
import dataclasses
import logging
import os

import numpy as np

from avjax.data import media, preprocess
from avjax.errors import MissingInput, UsageError

log = logging.getLogger(__name__)

CLASSES = {
    "music": ("flute", "acoustic_guitar", "accordion", "xylophone", "erhu", "tuba", "saxophone",
              "cello", "violin", "clarinet", "trumpet"),
    "kinetics_sounds": (
        "laughing", "playing_clarinet", "singing", "playing_harmonica", "playing_keyboard",
        "playing_xylophone", "playing_bass_guitar", "tapping_guitar", "playing_drums", "playing_piano",
        "ripping_paper", "playing_saxophone", "tickling", "playing_trumpet", "tapping_pen",
        "playing_organ", "tap_dancing", "playing_accordion", "blowing_nose", "shuffling_cards",
        "playing_guitar", "playing_trombone", "playing_bagpipes", "shoveling_snow", "bowling",
        "playing_violin", "chopping_wood"),
    "ave": ("Church_bell", "Male_speech", "Bark", "airplane", "Race_car", "Female_speech", "Helicopter",
            "Violin", "Flute", "Ukulele", "Frying", "Truck", "Shofar", "Motorcycle", "Chainsaw",
            "Acoustic_guitar", "Train_horn", "Clock", "Banjo", "Goat", "Baby_cry", "Bus", "Cat", "Horse",
            "Toilet_flush", "Rodents", "Accordion", "Mandolin"),
}
# The authors' CSV names per preset and split.
CSV_NAMES = {
    "folder": {"train": "train.csv", "val": "val.csv", "test": "test.csv"},   # `prepare` without --preset
    "music": {"train": "train.csv", "val": "val.csv", "test": "test.csv"},
    "ave": {"train": "train_AVE.csv", "val": "val_AVE.csv", "test": "test_AVE.csv"},
    "kinetics_sounds": {"train": "train_kinetics.csv", "val": "val_kinetics.csv",
                        "test": "test_kinetics.csv"},
}


class DataError(UsageError, ValueError):
    """A dataset row or file that cannot become an example."""


@dataclasses.dataclass(frozen=True)
class Row:
    audio: str       # absolute path of the wav
    frames: str      # absolute path of the frame folder
    n_frames: int
    label: int
    id: str


class SkipReport:
    """Counts examples dropped under on_error='skip', printed at the end."""

    def __init__(self):
        self.items = []

    def add(self, where, problem):
        self.items.append((where, problem))
        log.warning("skipped %s: %s", where, problem)

    def summary(self) -> str:
        if not self.items:
            return "no examples skipped"
        lines = [f"{len(self.items)} example(s) skipped:"] + [f"  {w}: {p}" for w, p in self.items]
        return "\n".join(lines)


def frame_path(frames_dir, index):
    return os.path.join(frames_dir, f"{index:06d}.jpg")


def read_rows(csv_path, classes, audio_root, frames_root, *, on_error="raise", report=None,
              check_files=True) -> list[Row]:
    """Parse and validate an authors'-format CSV into Rows (duplicates kept, as the original)."""
    class_index = {c: i for i, c in enumerate(classes)}
    rows = []
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        for line_no, fields in enumerate(csv.reader(f), start=1):
            where = f"{csv_path}:{line_no}"
            try:
                rows.append(_parse_row(fields, where, class_index, audio_root, frames_root, check_files))
            except (DataError, media.MediaError) as e:
                if on_error != "skip":
                    raise
                (report or SkipReport()).add(where, str(e))
    return rows


def _parse_row(fields, where, class_index, audio_root, frames_root, check_files):
    if not fields or all(not x.strip() for x in fields):
        raise DataError(f"{where}: empty row")
    if len(fields) != 3:
        raise DataError(f"{where}: expected 3 columns (audio, frames, n_frames), got {len(fields)}: {fields}")
    audio_rel, frames_rel, n = (x.strip() for x in fields)
    try:
        n_frames = int(n)
    except ValueError:
        raise DataError(f"{where}: n_frames {n!r} is not an integer") from None
    if n_frames < 1:
        raise DataError(f"{where}: n_frames {n_frames} < 1")
    parts = audio_rel.lstrip("/").split("/")
    if len(parts) < 2:
        raise DataError(f"{where}: audio path {audio_rel!r} is not /<Class>/<ID>.wav")
    cls = parts[0]
    if cls not in class_index:
        raise DataError(f"{where}: class {cls!r} is not in this dataset's class list")
    audio = os.path.join(audio_root, audio_rel.lstrip("/"))
    frames = os.path.join(frames_root, frames_rel.lstrip("/"))
    if check_files:
        if not os.path.isfile(audio):
            raise DataError(f"{where}: audio file {audio} does not exist")
        if os.path.getsize(audio) == 0:
            raise DataError(f"{where}: audio file {audio} is empty (0 bytes)")
        if not os.path.isdir(frames):
            raise DataError(f"{where}: frame folder {frames} does not exist")
        on_disk = sum(1 for name in os.listdir(frames) if name.endswith(".jpg"))
        if on_disk < n_frames or not os.path.isfile(frame_path(frames, n_frames)):
            raise DataError(f"{where}: n_frames {n_frames} but {frames} holds {on_disk} jpg frames")
    ident = "/".join(parts)[: -len(".wav")] if audio_rel.endswith(".wav") else "/".join(parts)
    return Row(audio, frames, n_frames, class_index[cls], ident)


class LayoutASource:
    """Random-access source of Rows (decoding happens in the transform, with its rng)."""

    def __init__(self, rows):
        self.rows = list(rows)

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        return self.rows[int(index)]


def load_example(row: Row, train: bool, rng, spec: preprocess.PreprocessSpec) -> dict:
    """A Row -> a model-ready example (docs/data.md, "Preprocessing")."""
    frame = preprocess.centre_frame(row.n_frames, train, rng, spec)
    pixels = media.read_image(frame_path(row.frames, frame))
    wave = media.read_audio(row.audio, spec.audio_rate)
    return preprocess.make_example(pixels, wave, frame, row.label, row.id, train, rng, spec)


def transforms(load, spec: preprocess.PreprocessSpec) -> dict:
    """{'train': fn(item, rng), 'eval': fn(item)} over a loader `load(item, train, rng, spec)`."""
    return {"train": lambda item, rng: load(item, True, rng, spec),
            "eval": lambda item: load(item, False, None, spec)}


def class_names(data_cfg) -> tuple[str, ...]:
    return tuple(data_cfg.classes) if data_cfg.get("classes") else CLASSES[data_cfg.preset]


def check_prepared(data_cfg, split, csv_path):
    """One clear message when a prepared dataset is missing: what, the command that makes it, the flag."""
    if os.path.isfile(csv_path):
        return
    preset = data_cfg.preset
    what = (f"config.data.root is not set (no {split} list)" if not data_cfg.root and not data_cfg.csv[split]
            else f"the {split} list {csv_path} does not exist")
    preset_flag = "" if preset == "folder" else f"--preset {preset} "
    raise MissingInput(
        f"{data_cfg.name or preset}: {what}. Prepare the dataset once (docs/data.md), e.g.\n"
        f"  python -m avjax.data.prepare {preset_flag}--videos <class folders> --out DIR\n"
        f"  (or --ave-root / --music-json + --music-videos / --k400-root / --manifest; --authors-lists for "
        f"the authors' splits)\nthen point to it with --config.data.root=DIR (or "
        f"--config.data.csv.{split}=FILE for a list elsewhere).")


def build(data_cfg, spec: preprocess.PreprocessSpec, *, check_files=True):
    """-> ({split: LayoutASource}, transforms) of the layout-A folder a data config names (`check_files`
    False: the CSV rows only, no look at the media)."""
    classes = class_names(data_cfg)
    report = SkipReport()
    sources = {}
    for split in ("train", "val", "test"):
        csv_path = data_cfg.csv[split] or os.path.join(data_cfg.root, CSV_NAMES[data_cfg.preset][split])
        check_prepared(data_cfg, split, csv_path)
        rows = read_rows(csv_path, classes, data_cfg.audio_root or os.path.join(data_cfg.root, "audio"),
                         data_cfg.frames_root or os.path.join(data_cfg.root, "frames"),
                         on_error=data_cfg.on_error, report=report, check_files=check_files)
        sources[split] = LayoutASource(rows)
    if report.items:
        log.warning(report.summary())
    if not len(sources["val"]) and data_cfg.get("val_fraction"):
        train_rows, val_rows = carve_validation(sources["train"].rows, data_cfg.val_fraction, data_cfg.val_seed)
        sources["train"], sources["val"] = LayoutASource(train_rows), LayoutASource(val_rows)
        (log.warning if check_files else log.debug)("%s: no validation rows; carved %d of the %d training rows (stratified by class, fraction "
                    "%g, seed %d) as the validation split", data_cfg.name, len(val_rows),
                    len(train_rows) + len(val_rows), data_cfg.val_fraction, data_cfg.val_seed)
    return sources, transforms(load_example, spec)


def carve_validation(rows, fraction, seed):
    """-> (train, val): a seeded, stratified share `fraction` of each class's rows (at least one row of
    every class that has two or more) moved to validation; row order otherwise kept."""
    rng = np.random.default_rng(seed)
    by_class = collections.defaultdict(list)
    for i, row in enumerate(rows):
        by_class[row.label].append(i)
    chosen = set()
    for label in sorted(by_class):
        idx = by_class[label]
        k = min(max(int(round(fraction * len(idx))), 1 if len(idx) > 1 else 0), len(idx) - 1)
        chosen.update(rng.choice(idx, size=k, replace=False).tolist() if k > 0 else [])
    return ([r for i, r in enumerate(rows) if i not in chosen], [r for i, r in enumerate(rows) if i in chosen])


def folder_classes(root) -> tuple[str, ...]:
    """The classes of a folder `prepare` made: its audio/<class>/ subfolders, sorted."""
    audio = os.path.join(root, "audio")
    if not root or not os.path.isdir(audio):
        raise FileNotFoundError(
            f"{root or 'config.data.root'}: not a prepared folder (no audio/<class>/ inside). Prepare your "
            "videos once with\n  python -m avjax.data.prepare --videos <class folders> --out DIR\nthen train "
            "with --config.data.root=DIR.")
    classes = tuple(sorted(d for d in os.listdir(audio) if os.path.isdir(os.path.join(audio, d))))
    if len(classes) < 2:
        raise ValueError(f"{audio}: {len(classes)} class folder(s); a classifier needs at least two")
    return classes
