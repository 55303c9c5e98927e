"""Examples/s of the layout-A train and eval pipelines at the paper's sizes (224^2, 65535 samples).

    python benchmarks/input_pipeline.py [--videos 48] [--workers 0,2] [--batches 12]

Writes a temporary layout-A dataset like the authors' (10 s wavs at 11000 Hz, so every example is
resampled to 11025 Hz; 82 jpg frames of 480x360 per video), then times full batches (decode, resample,
window, resize + crop, flip, volume jitter) with grain. Target on a 2-core CPU: >= 100 examples/s with
2 workers, so input never starves training. Prints figures; not a pass/fail test.
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


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--videos", type=int, default=48)
    p.add_argument("--workers", default="0,2")
    p.add_argument("--batches", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=16)
    args = p.parse_args()
    from absl import flags
    flags.FLAGS(sys.argv[:1])  # grain's worker processes read absl flags
    from avjax.configs.base import base_config
    from avjax.data import layout_a, pipeline, sources
    spec = sources.preprocess_spec(base_config().data)
    with tempfile.TemporaryDirectory() as root:
        classes = make_dataset(root, args.videos)
        rows = layout_a.read_rows(os.path.join(root, "train.csv"), classes, os.path.join(root, "audio"),
                                  os.path.join(root, "frames"))
        source = layout_a.LayoutASource(rows)
        transforms = layout_a.transforms(layout_a.load_example, spec)
        train, evaluate = transforms["train"], transforms["eval"]
        for workers in (int(w) for w in args.workers.split(",")):
            ds = pipeline.train_dataset(source, train, batch_size=args.batch_size, seed=0, workers=workers)
            it = iter(ds)
            next(it)  # start-up (worker processes) not counted
            t0 = time.perf_counter()
            for _ in range(args.batches):
                next(it)
            rate = args.batches * args.batch_size / (time.perf_counter() - t0)
            print(f"train pipeline, {workers} workers: {rate:6.1f} examples/s")
            ev = pipeline.eval_dataset(source, evaluate, batch_size=args.batch_size, workers=workers)
            t0 = time.perf_counter()
            n = sum(int(b["mask"].sum()) for b in ev)
            print(f"eval  pipeline, {workers} workers: {n / (time.perf_counter() - t0):6.1f} examples/s")


if __name__ == "__main__":
    main()
