"""The synthetic events as real video files: a `<root>/<class>/<ID>.mp4` tree for `prepare --videos`.

For trying the own-videos path (notebook 05, a first `prepare` run) without a dataset at hand: each
example's frame becomes a still video and its sound the audio track (tiled to the video's length),
encoded with PyAV (H.264 + AAC, no ffmpeg binary), so `prepare` decodes them like any camera file.

    python -m avjax.data.synthetic_videos OUT [--per-class N] [--seconds S]
"""
import argparse
import os
import sys

import numpy as np

from avjax.data import synthetic


def _encode(path, image, audio, sample_rate, seconds, fps):
    import av
    frame_rgb = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    n_samples = int(round(seconds * sample_rate))
    wave = np.resize(audio.astype(np.float32), n_samples)  # tiled to the video's length
    with av.open(path, "w", format="mp4") as out:
        video = out.add_stream("h264", rate=fps)
        video.height, video.width = frame_rgb.shape[:2]
        video.pix_fmt = "yuv420p"
        sound = out.add_stream("aac", rate=sample_rate, layout="mono")
        for _ in range(int(round(seconds * fps))):
            for packet in video.encode(av.VideoFrame.from_ndarray(frame_rgb, format="rgb24")):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        chunk = 1024
        for start in range(0, n_samples, chunk):
            block = av.AudioFrame.from_ndarray(wave[None, start:start + chunk], format="fltp", layout="mono")
            block.sample_rate = sample_rate
            for packet in sound.encode(block):
                out.mux(packet)
        for packet in sound.encode():
            out.mux(packet)


def write_video_tree(root, spec: synthetic.SyntheticSpec, *, per_class: int, seconds: float = 4.0,
                     fps: int = 8, class_names=None, split: str = "train") -> dict[str, list[str]]:
    """Write `per_class` videos of each class, drawn in order from the synthetic `split`; -> {class: paths}.

    Class folders are `class_names` (default `class<k>`); IDs are `<split><index>`. Existing files are
    kept (a rerun finishes an interrupted tree)."""
    names = list(class_names) if class_names else [f"class{k}" for k in range(spec.num_classes)]
    if len(names) != spec.num_classes:
        raise ValueError(f"{len(names)} class names for {spec.num_classes} classes")
    if seconds * fps < 1:
        raise ValueError(f"seconds={seconds} at fps={fps} gives no frame")
    written = {name: [] for name in names}
    for index in range(spec.split_size(split)):
        if all(len(paths) >= per_class for paths in written.values()):
            break
        example = synthetic.generate_example(spec, split, index)
        name = names[int(example["label"])]
        if len(written[name]) >= per_class:
            continue
        os.makedirs(os.path.join(root, name), exist_ok=True)
        path = os.path.join(root, name, f"{split}{index:05d}.mp4")
        if not os.path.exists(path):
            _encode(path + ".partial", example["image"], example["audio"], spec.sample_rate, seconds, fps)
            os.replace(path + ".partial", path)  # never a half-written .mp4 for prepare to meet
        written[name].append(path)
    short = {name: len(paths) for name, paths in written.items() if len(paths) < per_class}
    if short:
        raise ValueError(f"the synthetic {split} split has too few examples of {short} for {per_class} each; "
                         "raise data.synthetic.sizes")
    return written


def main(argv=None):
    from avjax.configs import base
    from avjax.data import sources
    parser = argparse.ArgumentParser(prog="python -m avjax.data.synthetic_videos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--fps", type=int, default=8)
    args = parser.parse_args(argv)
    data = base.base_config().data
    data.synthetic = base.synthetic_data()
    spec = sources.synthetic_spec(data)
    written = write_video_tree(args.out, spec, per_class=args.per_class, seconds=args.seconds, fps=args.fps)
    print(f"wrote {sum(map(len, written.values()))} videos in {len(written)} class folders under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
