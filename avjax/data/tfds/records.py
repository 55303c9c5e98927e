"""Reading layout-A TFDS records back: the frame a transform picks, and model-ready examples."""
import io

import numpy as np
from PIL import Image

from avjax.data import layout_a, preprocess
from avjax.data.tfds.builders import build_and_load


def frame_from_record(record, index):
    """Decode 1-based frame `index` of a layout-A TFDS record -> uint8 RGB."""
    start, end = int(record["jpeg_offsets"][index - 1]), int(record["jpeg_offsets"][index])
    with Image.open(io.BytesIO(record["jpeg"][start:end].tobytes())) as im:
        return np.asarray(im.convert("RGB"))


def load_record(record, train: bool, rng, spec: preprocess.PreprocessSpec) -> dict:
    """A layout-A TFDS record -> a model-ready example, exactly as `layout_a.load_example` for files."""
    frame = preprocess.centre_frame(int(record["n_frames"]), train, rng, spec)
    ident = record["id"]
    ident = ident.decode() if isinstance(ident, bytes) else ident
    return preprocess.make_example(frame_from_record(record, frame), np.asarray(record["audio"], np.float32),
                                   frame, int(record["label"]), ident, train, rng, spec)


def build(data_cfg, spec: preprocess.PreprocessSpec):
    """-> ({split: tfds data source}, transforms): the array_record build of a prepared layout-A folder."""
    sources = build_and_load(data_cfg.preset, data_cfg.tfds_dir, manual_dir=data_cfg.root)
    return sources, layout_a.transforms(load_record, spec)
