"""Weakly supervised sound-source localization (appendix B.2; reconstruction in docs/method.md).

ResNet18 without its global pool gives a map f_v[h, w] (B, h, w, D); the waveform net gives f_a (B, D).
Each location is scored by its cosine similarity with the audio feature, s[h, w] = cos(f_a, f_v[h, w]) (in
[0, 1]: both features follow a ReLU); the visual feature is the score-weighted mean of the map,
v = sum s f_v / sum s (`attention='mean'`, the reconstruction), or with weights softmax(s / T) over the
locations (`attention='softmax'`, sharper); concat(v, f_a) -> linear -> C logits. The heat map is s upsampled to
the frame (bilinear).

Trained with event labels only. The appendix's reconstruction (`attention='mean'`, the map at frame/32, cross-
entropy alone) classifies but its map does not find the sounding object: every location of the last stage sees
the whole frame. The default localization model of the configs adds what makes the map point: a map at frame/16
(`map_stride=16`: the last stage without its stride) and the audio-visual contrast of `train.contrast`
(avjax.train.losses.localization_contrast), which asks the best-matching location of a frame to match the sounds
of its class and no others.
"""
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from avjax.models.audio_net import AudioNet
from avjax.models.classifiers import CLASSIFIER_INIT_STD
from avjax.models.layers import TorchDense, scaled_channels
from avjax.models.resnet import ResNet18

NORM_EPS = 1e-6


def similarity_map(visual_map, f_a):
    """cos(f_a, f_v[h, w]) for every location: (B, h, w, D), (B, D) -> (B, h, w)."""
    v = visual_map / (jnp.linalg.norm(visual_map, axis=-1, keepdims=True) + NORM_EPS)
    a = f_a / (jnp.linalg.norm(f_a, axis=-1, keepdims=True) + NORM_EPS)
    return jnp.einsum("bhwd,bd->bhw", v, a)


def attention_weights(scores, attention="mean", temperature=1.0):
    """Weights over the map's locations, summing to 1: 'mean' s / sum s (the reconstruction's), or
    'softmax' softmax(s / temperature) (sharper: a few locations carry the visual feature)."""
    if attention == "softmax":
        b = scores.shape[0]
        return jax.nn.softmax(scores.reshape(b, -1) / temperature, axis=-1).reshape(scores.shape)
    if attention != "mean":
        raise ValueError(f"unknown attention {attention!r}; choose 'mean' or 'softmax'")
    return scores / (jnp.sum(scores, axis=(1, 2), keepdims=True) + NORM_EPS)


def attend(visual_map, scores, attention="mean", temperature=1.0):
    """The attention-weighted mean of the map: (B, h, w, D), (B, h, w) -> (B, D)."""
    return jnp.einsum("bhwd,bhw->bd", visual_map, attention_weights(scores, attention, temperature))


def heatmap(scores, size):
    """Scores upsampled (bilinear) to the frame: (B, h, w) -> (B, size, size)."""
    return jax.image.resize(scores, (scores.shape[0], size, size), method="bilinear")


class LocalizationClassifier(nn.Module):
    """Audio-attended visual feature + audio feature -> concat -> linear. `out['scores']` is the map."""

    num_classes: int
    width: float = 1.0
    attention: str = "mean"          # 'mean': s / sum s (docs/method.md); 'softmax': softmax(s / temperature)
    temperature: float = 0.1
    map_stride: int = 32             # the visual map's stride: 32 (ResNet18's), 16 or 8 (last stages unstrided)
    classifier_init_std: float = CLASSIFIER_INIT_STD
    dtype: Any = None
    param_dtype: Any = jnp.float32

    modality = "av"
    fusion = "localization"

    def setup(self):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        if self.map_stride not in (8, 16, 32):
            raise ValueError(f"map_stride must be 8, 16 or 32, got {self.map_stride!r}")
        self.visual_net = ResNet18(width=self.width, pool="avg", output_stride=self.map_stride, **kw)
        self.audio_net = AudioNet(width=self.width, **kw)
        self.classifier = TorchDense(
            self.num_classes, kernel_init=nn.initializers.normal(self.classifier_init_std), **kw)

    @property
    def feature_dim(self) -> int:
        return scaled_channels(self.width)[-1]

    def encode_visual(self, image, *, train: bool = False):
        """-> (visual_map, visual_map): the attention needs the map, so the map is the visual feature
        the attacks carry between steps (`classify` pools it)."""
        visual_map = self.visual_net(image, train=train)[1]
        return visual_map, visual_map

    def encode_audio(self, audio, *, train: bool = False):
        return self.audio_net(audio, train=train)

    def classify(self, visual_map, f_a):
        """-> (logits, fused) from the visual map and the audio feature."""
        scores = similarity_map(visual_map, f_a)
        fused = jnp.concatenate([attend(visual_map, scores, self.attention, self.temperature), f_a], axis=-1)
        return self.classifier(fused), fused

    def __call__(self, image, audio, *, train: bool = False):
        visual_map, _ = self.encode_visual(image, train=train)
        f_a = self.encode_audio(audio, train=train)
        scores = similarity_map(visual_map, f_a)
        f_v = attend(visual_map, scores, self.attention, self.temperature)
        fused = jnp.concatenate([f_v, f_a], axis=-1)
        return self.classifier(fused), {"visual": f_v, "audio": f_a, "fused": fused,
                                        "visual_map": visual_map, "scores": scores}
