"""Examples/s of the train and eval pipelines at the paper's sizes (224^2, 65535 samples), layout A's files
and their decoded format (avjax.data.decoded).

    python benchmarks/input_pipeline.py [--videos 48] [--workers 0,2] [--batches 12] [--formats files,decoded]

Writes a temporary layout-A dataset like the authors' (10 s wavs at 11000 Hz, so every example is
resampled to 11025 Hz; 82 jpg frames of 480x360 per video), then times full batches (decode, resample,
window, resize + crop, flip, volume jitter) with grain; then the same from the decoded format (memory-mapped
frames already resized, waveforms already resampled). Target on a 2-core CPU: >= 100 examples/s with 2
workers, so input never starves training; on an accelerator host, the step rate (benchmarks/accelerator.py).
Prints figures; not a pass/fail test.
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_dataset(root, n_videos, classes=("dog", "cat", "car", "bell"), frames=82):
    import soundfile as sf
    from PIL import Image
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n_videos):
        cls = classes[i % len(classes)]
        vid = f"v{i:04d}"
        fdir = os.path.join(root, "frames", cls, f"{vid}.mp4")
        os.makedirs(fdir, exist_ok=True)
        base = rng.uniform(0, 255, (360, 480, 3)).astype(np.uint8)
        for k in range(1, frames + 1):
            Image.fromarray(np.roll(base, k, axis=1)).save(os.path.join(fdir, f"{k:06d}.jpg"), quality=90)
        os.makedirs(os.path.join(root, "audio", cls), exist_ok=True)
        sf.write(os.path.join(root, "audio", cls, f"{vid}.wav"),
                 0.3 * rng.standard_normal(110000).astype(np.float32), 11000, subtype="PCM_16")
        rows.append(f"/{cls}/{vid}.wav,/{cls}/{vid}.mp4,{frames}")
    with open(os.path.join(root, "train.csv"), "w") as f:
        f.write("\n".join(rows) + "\n")
    return classes


class Repeated:
    """A source repeated to `length` examples: grain's index shuffle costs ~1.3 ms an example over 16 examples,
    ~20 us over 1600 (it walks a fixed-size permutation), so a benchmark over a few videos must look like a
    dataset of real size."""

    def __init__(self, source, length):
        self.source, self.length = source, length
        from avjax.data import pipeline
        self.read_ahead = getattr(source, "read_ahead", pipeline.DEFAULT_READ_AHEAD)
        self.read_in_process = getattr(source, "read_in_process", False)

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        return self.source[int(index) % len(self.source)]


def formats(root, classes, spec, names=("files", "decoded"), decode_workers=2):
    """{format: (source, transforms)} of the dataset `make_dataset` wrote under `root`; the decoded format is
    written first (-> also the seconds it took)."""
    from avjax.data import decoded, layout_a
    rows = layout_a.read_rows(os.path.join(root, "train.csv"), classes, os.path.join(root, "audio"),
                              os.path.join(root, "frames"))
    out, seconds = {}, None
    if "files" in names:
        out["files"] = (layout_a.LayoutASource(rows), layout_a.transforms(layout_a.load_example, spec))
    if "decoded" in names:
        t0 = time.perf_counter()
        decoded.write_splits({"train": rows}, os.path.join(root, "decoded"), spec, classes, workers=decode_workers,
                             progress=False)
        seconds = time.perf_counter() - t0
        out["decoded"] = (decoded.DecodedSource(os.path.join(root, "decoded"), "train", spec),
                          layout_a.transforms(decoded.load_example, spec))
    return out, seconds


def train_rate(source, train, *, batch_size, batches, workers, length=4096, min_seconds=3.0) -> float:
    """Examples/s of the shuffled, augmented train pipeline (over `source` repeated to `length`) once its
    workers run: at least `batches` batches and `min_seconds`."""
    from avjax.data import pipeline
    it = iter(pipeline.train_dataset(Repeated(source, length), train, batch_size=batch_size, seed=0,
                                     workers=workers))
    next(it)  # start-up (worker processes) not counted
    t0, n = time.perf_counter(), 0
    while n < batches or time.perf_counter() - t0 < min_seconds:
        next(it)
        n += 1
    return n * batch_size / (time.perf_counter() - t0)


def eval_rate(source, evaluate, *, batch_size, workers, examples=512) -> float:
    """Examples/s of an ordered evaluation pass over `examples` after its first batch (start-up)."""
    from avjax.data import pipeline
    it = iter(pipeline.eval_dataset(Repeated(source, examples), evaluate, batch_size=batch_size, workers=workers))
    next(it)
    t0 = time.perf_counter()
    n = sum(int(b["mask"].sum()) for b in it)
    return n / (time.perf_counter() - t0)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--videos", type=int, default=48)
    p.add_argument("--workers", default="0,2")
    p.add_argument("--batches", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--formats", default="files,decoded")
    args = p.parse_args()
    from absl import flags
    flags.FLAGS(sys.argv[:1])  # grain's worker processes read absl flags
    from avjax.configs.base import base_config
    from avjax.data import sources
    spec = sources.preprocess_spec(base_config().data)
    with tempfile.TemporaryDirectory() as root:
        classes = make_dataset(root, args.videos)
        made, seconds = formats(root, classes, spec, args.formats.split(","))
        if seconds is not None:
            print(f"decoded format written in {seconds:.1f} s ({args.videos} videos, 2 processes)")
        results = {}
        for name, (source, transforms) in made.items():
            for workers in (int(w) for w in args.workers.split(",")):
                tr = train_rate(source, transforms["train"], batch_size=args.batch_size, batches=args.batches,
                                workers=workers)
                ev = eval_rate(source, transforms["eval"], batch_size=args.batch_size, workers=workers)
                results[name, workers] = tr, ev
                print(f"{name:8s} {workers} workers: train {tr:7.1f} examples/s, eval {ev:7.1f} examples/s")
        for workers in (int(w) for w in args.workers.split(",")):
            if ("files", workers) in results and ("decoded", workers) in results:
                (ft, fe), (dt, de) = results["files", workers], results["decoded", workers]
                print(f"decoded / files, {workers} workers: train {dt / ft:.1f}x, eval {de / fe:.1f}x")


if __name__ == "__main__":
    main()
