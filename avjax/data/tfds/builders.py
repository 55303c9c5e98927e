"""The builders. Real datasets read a prepared layout-A folder from `manual_dir`."""
import os

import numpy as np
import tensorflow_datasets as tfds

from avjax.configs.base import build_spec, synthetic_data
from avjax.data import layout_a, media
from avjax.data.synthetic import SyntheticSpec, generate_example

LAYOUT_A_INSTRUCTIONS = """\
Prepare the dataset in layout A (the authors' format) first, e.g. with
`python -m avjax.data.prepare --out DIR --preset {preset} ...`, then pass DIR as manual_dir. It must hold:
  audio/<Class>/<ID>.wav               mono or stereo wav, any rate (resampled to 11025 Hz)
  frames/<Class>/<ID>.mp4/%06d.jpg     frames at 8 fps, 1-based
  {csvs}                               rows `/<Class>/<ID>.wav,/<Class>/<ID>.mp4,<n_frames>`
"""


def _instructions(preset):
    return LAYOUT_A_INSTRUCTIONS.format(preset=preset, csvs=", ".join(layout_a.CSV_NAMES[preset].values()))


class SyntheticAvBuilder(tfds.core.GeneratorBasedBuilder):
    """The embedded synthetic audio-visual events (see avjax.data.synthetic), default spec."""

    name = "synthetic_av"
    VERSION = tfds.core.Version("1.0.0")
    SPEC = build_spec(SyntheticSpec, synthetic_data())

    def _info(self):
        s = self.SPEC
        return tfds.core.DatasetInfo(builder=self, description=__doc__, features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(s.image_size, s.image_size, 3), dtype=np.float32,
                                          encoding="zlib"),
            "audio": tfds.features.Tensor(shape=(s.audio_len,), dtype=np.float32, encoding="zlib"),
            "label": tfds.features.ClassLabel(num_classes=s.num_classes),
            "box": tfds.features.Tensor(shape=(4,), dtype=np.float32),
            "id": tfds.features.Text()}))

    def _split_generators(self, dl_manager):
        del dl_manager
        return {split: self._generate_examples(split) for split in ("train", "val", "test")}

    def _generate_examples(self, split):
        for i in range(self.SPEC.split_size(split)):
            ex = generate_example(self.SPEC, split, i)
            yield ex["id"], {**ex, "label": int(ex["label"])}


class _LayoutABuilder(tfds.core.GeneratorBasedBuilder):
    """One example per CSV row: every frame's JPEG bytes, the 11025 Hz waveform, label, id.

    The JPEGs are stored concatenated (`jpeg`, uint8) with their start offsets (`jpeg_offsets`), so a
    reader decodes only the frame it picks (MUSIC clips hold ~1000 frames each).
    """

    VERSION = tfds.core.Version("1.0.0")
    PRESET = ""

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, description=self.__doc__, features=tfds.features.FeaturesDict({
            "jpeg": tfds.features.Tensor(shape=(None,), dtype=np.uint8, encoding="zlib"),
            "jpeg_offsets": tfds.features.Tensor(shape=(None,), dtype=np.int64),
            "audio": tfds.features.Tensor(shape=(None,), dtype=np.float32, encoding="zlib"),
            "n_frames": np.int32,
            "label": tfds.features.ClassLabel(names=layout_a.CLASSES[self.PRESET]),
            "id": tfds.features.Text()}))

    def _split_generators(self, dl_manager):
        root = dl_manager.manual_dir
        out = {}
        for split, name in layout_a.CSV_NAMES[self.PRESET].items():
            rows = layout_a.read_rows(os.path.join(root, name), layout_a.CLASSES[self.PRESET],
                                      os.path.join(root, "audio"), os.path.join(root, "frames"))
            out[split] = self._generate_examples(rows)
        return out

    def _generate_examples(self, rows):
        for index, row in enumerate(rows):
            frames = []
            for k in range(1, row.n_frames + 1):
                path = os.path.join(row.frames, f"{k:06d}.jpg")
                media.read_image(path)  # validate: a corrupt jpg fails here, naming the file
                with open(path, "rb") as f:
                    frames.append(f.read())
            # keys stay unique even for the authors' repeated rows
            offsets = np.cumsum([0] + [len(f) for f in frames]).astype(np.int64)
            yield f"{index:07d}/{row.id}", {
                "jpeg": np.frombuffer(b"".join(frames), np.uint8), "jpeg_offsets": offsets,
                "audio": media.read_audio(row.audio), "n_frames": row.n_frames, "label": row.label,
                "id": row.id}


class AveBuilder(_LayoutABuilder):
    """AVE (28 events; the authors' 3339/402/402 split) from a prepared layout-A folder."""

    name = "ave"
    PRESET = "ave"
    MANUAL_DOWNLOAD_INSTRUCTIONS = _instructions("ave")


class MusicBuilder(_LayoutABuilder):
    """MIT-MUSIC solo (11 instruments; the authors' 312/104/104 split) from layout A."""

    name = "music"
    PRESET = "music"
    MANUAL_DOWNLOAD_INSTRUCTIONS = _instructions("music")


class KineticsSoundsBuilder(_LayoutABuilder):
    """Kinetics-Sounds (27 classes; the authors' 9309/3103/3104 split) from layout A."""

    name = "kinetics_sounds"
    PRESET = "kinetics_sounds"
    MANUAL_DOWNLOAD_INSTRUCTIONS = _instructions("kinetics_sounds")


BUILDERS = {b.name: b for b in (SyntheticAvBuilder, AveBuilder, MusicBuilder, KineticsSoundsBuilder)}


def build_and_load(name, data_dir, manual_dir=None):
    """Prepare (once) as array_record and open every split with `tfds.data_source`."""
    builder = BUILDERS[name](data_dir=os.path.expanduser(data_dir))
    config = tfds.download.DownloadConfig(manual_dir=manual_dir) if manual_dir else None
    builder.download_and_prepare(file_format="array_record", download_config=config)
    return {split: tfds.data_source(name, data_dir=os.path.expanduser(data_dir), split=split,
                                    builder_kwargs={"file_format": "array_record"})
            for split in builder.info.splits}
