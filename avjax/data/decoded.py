"""The decoded format: a layout-A dataset decoded once into flat uint8 / float32 files read by memory map.

Layout A decodes a JPEG, resizes it (bicubic) and reads and resamples a wav for every example of every
epoch, which cannot keep up with an accelerator's train step (benchmarks/accelerator.py, docs/benchmarks.md).
This format stores, once, everything that does not depend on an example's random draw, after the expensive
steps:

- for the train split, every frame the train transform may pick (frames margin+1 .. n-margin, the
  original's randint), already resized to the train size (shorter side int(size * train_resize_factor));
- for every split, the eval image (frame n // 2 resized to `size` and centre-cropped);
- the waveform, resampled to `audio_rate`.

Reading an example is then a memory-mapped slice, the random crop and flip, and the audio window: the
same example, to the bit, as layout A's with the same rng (tests/data/test_decoded.py), at a small
fraction of the cost (benchmarks/input_pipeline.py).

    python -m avjax.data.decoded --config=configs/ave.py --config.data.root=/data/ave [--workers N]
    python -m avjax.main --config=configs/ave.py --config.data.root=/data/ave --config.data.source=decoded ...

`python -m avjax.main` with `data.source='decoded'` also writes the format itself when it is missing (one
process; with several hosts, run the command above once first). Files, under `data.decoded_dir` (default
`<data.root>/decoded`):

    meta.json                     format version, the preprocessing it was made for, classes, split sizes and
                                  a fingerprint of each split's rows (checked against the config's lists)
    <split>/index.npz             label, id, n_frames, first stored train frame, frame and audio offsets
    <split>/eval_images.u8        (N, size, size, 3) uint8
    <split>/train_frames.u8       train split only: each video's candidate frames, one after another
    <split>/audio.f32             the waveforms, one after another

The train frames dominate the size (at the paper's sizes 34 candidate frames of 246 x 328 for a 10 s clip):
AVE ~28 GB, Kinetics-Sounds ~77 GB, MUSIC (minutes-long videos) tens of GB; the command prints its estimate
and refuses to start without the disk space. A split is written to `<split>.partial/` and renamed when
complete, so a killed run keeps the splits it finished and redoes only the one it was writing.
"""
import collections
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import sys

import numpy as np
from tqdm import tqdm

from avjax.data import layout_a, media, preprocess
from avjax.errors import UsageError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
META = "meta.json"
TRAIN_SPLITS = ("train",)   # the splits the train transform reads (the others hold eval images only)


class DecodedError(UsageError, ValueError):
    """A decoded folder that is missing, incomplete, or made for other preprocessing."""


def made_for(spec: preprocess.PreprocessSpec) -> dict:
    """The preprocessing fields the stored pixels and waveforms depend on (the rest apply at read time)."""
    return {"image_size": spec.image_size, "train_resize_factor": spec.train_resize_factor,
            "audio_rate": spec.audio_rate, "margin_frames": int(spec.fps * spec.margin_seconds)}


def rows_fingerprint(rows) -> str:
    """What identifies a split's examples, in order: (id, n_frames, label) of each row (not the media's
    paths, so the dataset folder can move)."""
    blob = json.dumps([[r.id, r.n_frames, r.label] for r in rows])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _listed_rows(data_cfg, spec) -> dict:
    """{split: rows} the data config lists (CSV rows and the validation carve; the media are not opened)."""
    sources, _ = layout_a.build(data_cfg, spec, check_files=False)
    return {split: source.rows for split, source in sources.items()}


def train_frame_range(n_frames: int, spec: preprocess.PreprocessSpec) -> tuple[int, int]:
    """1-based (first, last) frame `preprocess.centre_frame` can pick in training."""
    margin = int(spec.fps * spec.margin_seconds)
    lo, hi = margin + 1, n_frames - margin
    return (1, n_frames) if hi < lo else (lo, hi)


# ------------------------------------------------------------------------------------------- writing

def decode_row(row: layout_a.Row, spec: preprocess.PreprocessSpec, train_frames: bool):
    """One layout-A row -> (eval image, train frames (k, h, w, 3) or None, waveform)."""
    wave = media.read_audio(row.audio, spec.audio_rate)
    eval_frame = preprocess.centre_frame(row.n_frames, False, None, spec)
    image = media.read_image(layout_a.frame_path(row.frames, eval_frame))
    eval_image = np.ascontiguousarray(preprocess.centre_crop(preprocess.resized(image, False, spec), spec.image_size))
    frames = None
    if train_frames:
        lo, hi = train_frame_range(row.n_frames, spec)
        stack = []
        for index in range(lo, hi + 1):
            path = layout_a.frame_path(row.frames, index)
            frame = preprocess.resized(media.read_image(path), True, spec)
            if stack and frame.shape != stack[0].shape:
                raise layout_a.DataError(f"{path}: frame size {frame.shape[:2]} differs from the video's first "
                                         f"frame's {stack[0].shape[:2]} (after resizing)")
            stack.append(frame)
        frames = np.stack(stack)
    return eval_image, frames, wave


def _decode_or_skip(args):
    row, spec, train_frames, on_error = args
    try:
        return decode_row(row, spec, train_frames)
    except (media.MediaError, layout_a.DataError) as e:
        if on_error != "skip":
            raise
        return str(e)


def _ordered(fn, items, workers):
    """fn over items in order, `workers` processes, at most 2 per worker in flight (bounded memory: a
    minutes-long MUSIC video's candidate frames take hundreds of MB)."""
    if workers <= 1:
        yield from map(fn, items)
        return
    # spawn, not fork: the parent may run JAX threads, and a forked copy of them can deadlock
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        pending = collections.deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        for future in pending:
            yield future.result()


def estimate_bytes(rows, spec, train_frames: bool, sample=8) -> int:
    """Bytes a split will take, from the first frames of up to `sample` rows."""
    if not rows:
        return 0
    size = spec.image_size
    total = len(rows) * size * size * 3
    total += sum(4 * int(1.02 * r.n_frames / spec.fps * spec.audio_rate) for r in rows)
    if train_frames:
        per_frame = []
        for row in rows[:: max(1, len(rows) // sample)][:sample]:
            per_frame.append(preprocess.resized(media.read_image(layout_a.frame_path(row.frames, 1)), True,
                                                spec).nbytes)
        frames = sum(hi - lo + 1 for lo, hi in (train_frame_range(r.n_frames, spec) for r in rows))
        total += int(float(np.mean(per_frame)) * frames)
    return total


def write_split(rows, directory, spec, *, train_frames: bool, workers: int = 1, on_error: str = "raise",
                progress=True) -> int:
    """Decode `rows` into `directory` (written as `directory.partial`, renamed when complete) -> examples kept."""
    partial = directory + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)
    labels, ids, n_frames, firsts = [], [], [], []
    frame_offsets, frame_shapes, audio_offsets, audio_lengths = [], [], [], []
    skipped = layout_a.SkipReport()
    frame_at = audio_at = 0
    with open(os.path.join(partial, "eval_images.u8"), "wb") as f_eval, \
            open(os.path.join(partial, "audio.f32"), "wb") as f_audio, \
            open(os.path.join(partial, "train_frames.u8"), "wb") if train_frames else contextlib.nullcontext() \
            as f_frames:
        jobs = ((row, spec, train_frames, on_error) for row in rows)
        decoded_rows = zip(rows, _ordered(_decode_or_skip, jobs, workers))
        for row, out in tqdm(decoded_rows, total=len(rows), desc=f"decode {os.path.basename(directory)}",
                             unit="video", disable=not progress, mininterval=5):
            if isinstance(out, str):
                skipped.add(row.id, out)
                continue
            eval_image, frames, wave = out
            f_eval.write(eval_image.tobytes())
            f_audio.write(np.ascontiguousarray(wave, np.float32).tobytes())
            audio_offsets.append(audio_at)
            audio_lengths.append(wave.shape[0])
            audio_at += wave.shape[0]
            if train_frames:
                f_frames.write(frames.tobytes())
                frame_offsets.append(frame_at)
                frame_shapes.append(frames.shape)
                frame_at += frames.nbytes
                firsts.append(train_frame_range(row.n_frames, spec)[0])
            labels.append(row.label)
            ids.append(row.id)
            n_frames.append(row.n_frames)
    if skipped.items:
        log.warning("%s: %s", directory, skipped.summary())
    np.savez(os.path.join(partial, "index.npz"), label=np.asarray(labels, np.int32), id=np.asarray(ids, str),
             n_frames=np.asarray(n_frames, np.int32), first=np.asarray(firsts, np.int32),
             frame_offset=np.asarray(frame_offsets, np.int64),
             frame_shape=np.asarray(frame_shapes, np.int64).reshape(-1, 4),
             audio_offset=np.asarray(audio_offsets, np.int64), audio_length=np.asarray(audio_lengths, np.int64))
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(partial, directory)
    return len(labels)


def decoded_dir(data_cfg) -> str:
    """Where the decoded format of a data config lives: `data.decoded_dir`, else `<data.root>/decoded`."""
    path = data_cfg.get("decoded_dir", "") or (os.path.join(data_cfg.root, "decoded") if data_cfg.root else "")
    if not path:
        raise DecodedError(f"{data_cfg.name}: data.source='decoded' needs config.data.decoded_dir or "
                           "config.data.root (the decoded folder defaults to <root>/decoded)")
    return os.path.expanduser(path)


def write(data_cfg, spec: preprocess.PreprocessSpec, out: str | None = None, *, workers: int = 1,
          progress=True) -> str:
    """Decode the layout-A dataset `data_cfg` names (its splits, as `layout_a.build` makes them) into `out`
    (default: `decoded_dir(data_cfg)`)."""
    out = out or decoded_dir(data_cfg)
    sources, _ = layout_a.build(data_cfg, spec)
    listed = {split: rows_fingerprint(rows) for split, rows in _listed_rows(data_cfg, spec).items()}
    return write_splits({split: source.rows for split, source in sources.items()}, out, spec,
                        list(layout_a.class_names(data_cfg)), workers=workers, on_error=data_cfg.on_error,
                        progress=progress, listed=listed)


def write_splits(rows: dict, out: str, spec: preprocess.PreprocessSpec, classes, *, workers: int = 1,
                 on_error: str = "raise", progress=True, listed: dict | None = None) -> str:
    """Decode {split: [layout_a.Row]} into `out`. Splits already complete for the same preprocessing and
    rows are kept (a killed run redoes only the split it was writing). Refuses to start when the disk cannot
    hold the estimate. `listed`: {split: rows_fingerprint} of the rows the config lists (recorded in
    meta.json, checked when the format is read for a config)."""
    listed = listed or {split: rows_fingerprint(r) for split, r in rows.items()}
    meta = {"format": FORMAT_VERSION, "made_for": made_for(spec), "classes": list(classes), "splits": {},
            "rows": {}}
    meta_path = os.path.join(out, META)
    if os.path.isfile(meta_path):
        old = _read_meta(out)
        if old.get("made_for") != meta["made_for"]:
            raise DecodedError(f"{meta_path}: made for {old.get('made_for')}, not {meta['made_for']}; choose "
                               "another config.data.decoded_dir or delete that folder")
        keep = {s for s in old.get("splits", {}) if old.get("rows", {}).get(s) == listed.get(s)}
        meta["splits"] = {s: n for s, n in old["splits"].items() if s in keep}
        meta["rows"] = {s: f for s, f in old.get("rows", {}).items() if s in keep}
    os.makedirs(out, exist_ok=True)
    todo = [s for s in rows if not (s in meta["splits"] and os.path.isdir(os.path.join(out, s)))]
    need = sum(estimate_bytes(rows[s], spec, s in TRAIN_SPLITS) for s in todo)
    free = shutil.disk_usage(out).free
    print(f"decoding {', '.join(todo) or 'nothing (complete)'} into {out}: about {_bytes(need)} "
          f"({_bytes(free)} free)", file=sys.stderr)
    if need > free:
        raise DecodedError(f"{out}: the decoded splits need about {_bytes(need)}, {_bytes(free)} are "
                           "free; choose another config.data.decoded_dir")
    for split in todo:
        kept = write_split(rows[split], os.path.join(out, split), spec, train_frames=split in TRAIN_SPLITS,
                           workers=workers, on_error=on_error, progress=progress)
        meta["splits"][split] = kept
        meta["rows"][split] = listed[split]
        _write_meta(out, meta)
    _write_meta(out, meta)
    return out


def _bytes(n) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def _write_meta(out, meta):
    tmp = os.path.join(out, META + ".tmp")
    with open(tmp, "w") as f:
        json.dump(meta, f, indent=1)
    os.replace(tmp, os.path.join(out, META))


def _read_meta(directory) -> dict:
    path = os.path.join(directory, META)
    try:
        with open(path) as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        raise DecodedError(f"{path}: unreadable ({type(e).__name__}: {e})") from e
    if meta.get("format") != FORMAT_VERSION:
        raise DecodedError(f"{path}: format {meta.get('format')}, this avjax reads {FORMAT_VERSION}; decode again")
    return meta


# ------------------------------------------------------------------------------------------- reading

@dataclasses.dataclass(frozen=True)
class DecodedItem:
    """One stored example: lazy memory-mapped views, read when the transform slices them."""

    label: int
    id: str
    n_frames: int
    first: int                     # 1-based frame index of frames[0]
    eval_image: np.ndarray         # (size, size, 3) uint8
    audio: np.ndarray              # (samples,) float32 at audio_rate
    frames: np.ndarray | None      # (k, h, w, 3) uint8 train-resized candidates; None outside TRAIN_SPLITS
    where: str


class DecodedSource:
    """Random-access source of one decoded split (grain-compatible; memory maps open lazily per process)."""

    # grain read-ahead (threads, buffered examples): reading is a memory-mapped slice, so grain's 16 / 500
    # for media decoding only add overhead (2 cores: 1756 vs 656 examples/s, benchmarks/input_pipeline.py)
    read_ahead = (2, 32)
    # evaluation reads in process: an example is cheaper to read than to pickle back from a worker
    read_in_process = True

    def __init__(self, directory: str, split: str, spec: preprocess.PreprocessSpec):
        self.directory, self.split = directory, split
        self.path = os.path.join(directory, split)
        meta = _read_meta(directory)
        if meta["made_for"] != made_for(spec):
            raise DecodedError(f"{os.path.join(directory, META)}: decoded for {meta['made_for']}, but this config's "
                               f"preprocessing is {made_for(spec)}; decode again into another data.decoded_dir")
        if split not in meta["splits"] or not os.path.isdir(self.path):
            raise DecodedError(f"{self.path}: split {split!r} was not decoded (incomplete run?); run "
                               "python -m avjax.data.decoded with the same config")
        index_path = os.path.join(self.path, "index.npz")
        try:
            with np.load(index_path) as z:
                self.index = {k: z[k] for k in z.files}
        except (OSError, ValueError) as e:
            raise DecodedError(f"{index_path}: unreadable ({type(e).__name__}: {e})") from e
        self.image_size = spec.image_size
        self._check_sizes()
        self._maps = None

    def _expected_bytes(self) -> dict:
        n = len(self.index["label"])
        out = {"eval_images.u8": n * self.image_size ** 2 * 3, "audio.f32": 4 * int(self.index["audio_length"].sum())}
        if len(self.index["frame_shape"]):
            out["train_frames.u8"] = int(np.prod(self.index["frame_shape"], axis=1).sum())
        return out

    def _check_sizes(self):
        for name, expected in self._expected_bytes().items():
            path = os.path.join(self.path, name)
            actual = os.path.getsize(path) if os.path.isfile(path) else None
            if actual != expected:
                raise DecodedError(f"{path}: {'missing' if actual is None else f'{actual} bytes'}, the index says "
                                   f"{expected} (truncated or from another run); decode this split again")

    def _open(self):
        def mm(name, dtype):
            path = os.path.join(self.path, name)
            return np.memmap(path, dtype, mode="r") if os.path.getsize(path) else np.zeros(0, dtype)
        size = self.image_size
        maps = {"eval": mm("eval_images.u8", np.uint8).reshape(-1, size, size, 3), "audio": mm("audio.f32", np.float32)}
        if len(self.index["frame_shape"]):
            maps["frames"] = mm("train_frames.u8", np.uint8)
        return maps

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_maps"] = None   # memory maps are reopened in each process
        return state

    def __len__(self):
        return len(self.index["label"])

    def __getitem__(self, i) -> DecodedItem:
        if self._maps is None:
            self._maps = self._open()
        i = int(i)
        ix, maps = self.index, self._maps
        a0 = int(ix["audio_offset"][i])
        frames = None
        if "frames" in maps:
            shape = tuple(int(d) for d in ix["frame_shape"][i])
            f0 = int(ix["frame_offset"][i])
            frames = maps["frames"][f0: f0 + int(np.prod(shape))].reshape(shape)
        return DecodedItem(label=int(ix["label"][i]), id=str(ix["id"][i]), n_frames=int(ix["n_frames"][i]),
                           first=int(ix["first"][i]) if len(ix["first"]) else 0, eval_image=maps["eval"][i],
                           audio=maps["audio"][a0: a0 + int(ix["audio_length"][i])], frames=frames,
                           where=f"{self.path}[{i}] ({ix['id'][i]})")


def load_example(item: DecodedItem, train: bool, rng, spec: preprocess.PreprocessSpec) -> dict:
    """A stored example -> the model-ready example `layout_a.load_example` makes of its row (same rng draws).

    Training examples keep the image as uint8 pixels: batching and copying a quarter of the bytes took the train
    pipeline from 1428 to 2063 examples/s (2 workers, 2 cores), and `parallel.global_batch` divides by 255 on
    the devices (the same float32 values).
    Evaluation examples are float32 in [0, 1], as every other source's."""
    frame = preprocess.centre_frame(item.n_frames, train, rng, spec)
    if train:
        if item.frames is None:
            raise DecodedError(f"{item.where}: this split holds eval images only (train frames are decoded for "
                               f"{TRAIN_SPLITS})")
        image = np.ascontiguousarray(preprocess.random_crop_flip(item.frames[frame - item.first], rng, spec))
    else:
        image = preprocess.unit_pixels(item.eval_image)
    return {"image": image, "audio": preprocess.audio_transform(item.audio, frame, train, rng, spec),
            "label": np.int32(item.label), "id": item.id}


def build(data_cfg, spec: preprocess.PreprocessSpec, *, workers: int | None = None):
    """-> ({split: DecodedSource}, transforms); decodes the dataset first when its folder is missing (one process)."""
    directory = decoded_dir(data_cfg)
    if not os.path.isfile(os.path.join(directory, META)):
        import jax
        if jax.process_count() > 1:
            raise DecodedError(f"{directory}: not decoded. With several hosts, decode once first: python -m "
                               "avjax.data.decoded --config=... (the same config flags)")
        log.warning("%s: not decoded yet; decoding the dataset once (python -m avjax.data.decoded does the same)",
                    directory)
        write(data_cfg, spec, directory, workers=workers or os.cpu_count() or 1)
    check_matches(directory, data_cfg, spec)
    splits = ("train", "val", "test")
    sources = {split: DecodedSource(directory, split, spec) for split in splits}
    return sources, layout_a.transforms(load_example, spec)


def check_matches(directory, data_cfg, spec):
    """The decoded folder holds the examples the config lists: the same classes and, per split, the same
    rows in the same order (another CSV list or validation carve with the same root is an error, not
    examples silently taken from the earlier list)."""
    meta = _read_meta(directory)
    path = os.path.join(directory, META)
    classes = list(layout_a.class_names(data_cfg))
    if meta["classes"] != classes:
        raise DecodedError(f"{path}: decoded for the classes {meta['classes']}, the config lists {classes}; "
                           "decode again into another config.data.decoded_dir")
    for split, rows in _listed_rows(data_cfg, spec).items():
        if meta.get("rows", {}).get(split) != rows_fingerprint(rows):
            raise DecodedError(f"{path}: the {split} split was decoded from other rows than the {len(rows)} the "
                               "config lists now (another CSV or validation carve?); run python -m "
                               "avjax.data.decoded with this config (it redoes that split) or choose another "
                               "config.data.decoded_dir")


def main(argv):
    from absl import flags

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True)
    config = flags.FLAGS.config
    if config.data.get("preset") == "folder" and not config.data.classes:   # configs/folder.py: from the folder
        with config.unlocked():
            config.data.classes = layout_a.folder_classes(config.data.root)
    out = write(config.data, preprocess.spec_from_config(config.data), workers=flags.FLAGS.workers or os.cpu_count())
    print(f"decoded into {out}; train with --config.data.source=decoded"
          + ("" if not config.data.get("decoded_dir") else f" --config.data.decoded_dir={out}"))


if __name__ == "__main__":
    from absl import app, flags
    from ml_collections import config_flags
    config_flags.DEFINE_config_file("config", None, "a data config (configs/ave.py, configs/folder.py, ...)",
                                    lock_config=True)
    flags.DEFINE_integer("workers", 0, "decoding processes (0: one per CPU core)")
    flags.mark_flags_as_required(["config"])
    app.run(main)
