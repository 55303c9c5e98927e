"""Audio-visual and unimodal event classifiers: encoders + fusion head + final linear layer.

All return `(logits, out)`; `out` holds the features (`visual`, `audio`, `fused`, `visual_map`) the
losses, defenses and localization need. Encoders are exposed as methods (`encode_visual`,
`encode_audio`, `classify`) so an attack on one modality can compute the other's features once.
"""
from typing import Any

import jax.numpy as jnp
from flax import linen as nn

from avjax.defenses.memory import MemorySpec, defend_feature
from avjax.models.audio_net import AudioNet
from avjax.models.crmt_head import CRMTHead
from avjax.models.fusion import get_fusion
from avjax.models.layers import TorchDense, scaled_channels
from avjax.models.resnet import ResNet18

CLASSIFIER_INIT_STD = 1e-4  # the released classifier's weight init, N(0, 1e-4)
HEADS = ("linear", "crmt")


class AVClassifier(nn.Module):
    """ResNet18 frame net + waveform net + one fusion head + FC -> C logits.

    `head='crmt'`: CRMT's per-modality last layer on the concatenated features instead of the FC (the concat
    fusion only); `fused` is then the per-modality logits [o_v; o_a] the fused logits are a weighted sum of."""

    num_classes: int
    fusion: str = "concat"
    width: float = 1.0
    visual_pool: str = "avg"
    classifier_init_std: float = CLASSIFIER_INIT_STD
    dtype: Any = None
    param_dtype: Any = jnp.float32
    memory: MemorySpec | None = None   # ExFMem: features pass through the external memory
    head: str = "linear"

    modality = "av"

    def setup(self):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        self.visual_net = ResNet18(width=self.width, pool=self.visual_pool, **kw)
        self.audio_net = AudioNet(width=self.width, **kw)
        self.fusion_head = get_fusion(self.fusion)(**kw)
        if self.head == "crmt":
            self.classifier = CRMTHead(self.num_classes, **kw)
        else:
            self.classifier = TorchDense(
                self.num_classes, kernel_init=nn.initializers.normal(self.classifier_init_std), **kw)
        if self.memory is not None:  # frozen banks: filled by the memory stage, never by the optimizer
            shape = (self.memory.size, self.feature_dim)
            self.banks = {m: self.variable("memory", m, jnp.zeros, shape, jnp.float32)
                          for m in ("visual", "audio")}
            self.lipschitz = {m: self.variable("memory", f"lipschitz_{m}", jnp.ones, (), jnp.float32)
                              for m in ("visual", "audio")}

    @property
    def feature_dim(self) -> int:
        return scaled_channels(self.width)[-1]

    def _through_memory(self, modality, f):
        if self.memory is None:
            return f
        step = self.memory.step_visual if modality == "visual" else self.memory.step_audio
        weight = self.get_variable("memory", "blend") if self.memory.blend is None else None
        return defend_feature(self.memory, self.banks[modality].value, self.lipschitz[modality].value, f, step,
                              weight)

    def raw_features(self, image, audio, *, train: bool = False):
        """-> (f_v, f_a) straight from the encoders (what a memory is built from)."""
        return self.visual_net(image, train=train)[0], self.audio_net(audio, train=train)

    def encode_visual(self, image, *, train: bool = False):
        """-> (f_v (B, D), visual_map (B, h, w, D)); f_v through the memory when the model has one."""
        f_v, visual_map = self.visual_net(image, train=train)
        return self._through_memory("visual", f_v), visual_map

    def encode_audio(self, audio, *, train: bool = False):
        """-> f_a (B, D); through the memory when the model has one."""
        return self._through_memory("audio", self.audio_net(audio, train=train))

    def classify(self, f_v, f_a):
        """-> (logits, fused)."""
        if self.head == "crmt":
            logits, (o_v, o_a) = self.classifier(f_v, f_a)
            return logits, jnp.concatenate([o_v, o_a], axis=-1)
        fused = self.fusion_head(f_v, f_a)
        return self.classifier(fused), fused

    def __call__(self, image, audio, *, train: bool = False):
        f_v, visual_map = self.encode_visual(image, train=train)
        f_a = self.encode_audio(audio, train=train)
        logits, fused = self.classify(f_v, f_a)
        return logits, {"visual": f_v, "audio": f_a, "fused": fused, "visual_map": visual_map}


class AudioClassifier(nn.Module):
    """Unimodal audio baseline: waveform net + FC. The image argument is accepted and ignored."""

    num_classes: int
    width: float = 1.0
    classifier_init_std: float = CLASSIFIER_INIT_STD
    dtype: Any = None
    param_dtype: Any = jnp.float32

    modality = "audio"

    def setup(self):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        self.audio_net = AudioNet(width=self.width, **kw)
        self.classifier = TorchDense(
            self.num_classes, kernel_init=nn.initializers.normal(self.classifier_init_std), **kw)

    def encode_audio(self, audio, *, train: bool = False):
        return self.audio_net(audio, train=train)

    def classify(self, f_v, f_a):
        del f_v
        return self.classifier(f_a), f_a

    def __call__(self, image, audio, *, train: bool = False):
        del image
        f_a = self.encode_audio(audio, train=train)
        logits, fused = self.classify(None, f_a)
        return logits, {"audio": f_a, "fused": fused}


class VisualClassifier(nn.Module):
    """Unimodal visual baseline: ResNet18 + FC. The audio argument is accepted and ignored."""

    num_classes: int
    width: float = 1.0
    visual_pool: str = "avg"
    classifier_init_std: float = CLASSIFIER_INIT_STD
    dtype: Any = None
    param_dtype: Any = jnp.float32

    modality = "visual"

    def setup(self):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        self.visual_net = ResNet18(width=self.width, pool=self.visual_pool, **kw)
        self.classifier = TorchDense(
            self.num_classes, kernel_init=nn.initializers.normal(self.classifier_init_std), **kw)

    def encode_visual(self, image, *, train: bool = False):
        return self.visual_net(image, train=train)

    def classify(self, f_v, f_a):
        del f_a
        return self.classifier(f_v), f_v

    def __call__(self, image, audio, *, train: bool = False):
        del audio
        f_v, visual_map = self.encode_visual(image, train=train)
        logits, fused = self.classify(f_v, None)
        return logits, {"visual": f_v, "fused": fused, "visual_map": visual_map}
