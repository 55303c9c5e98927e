"""Models: the paper's encoders, the five fusion heads, AV and unimodal classifiers, and `build`."""
from typing import Any, Mapping

import jax.numpy as jnp

from avjax.configs.base import build_spec
from avjax.defenses.memory import MemorySpec
from avjax.models.audio_net import AudioNet
from avjax.models.classifiers import HEADS, AudioClassifier, AVClassifier, VisualClassifier
from avjax.models.fusion import FUSIONS, get_fusion
from avjax.models.localization import LocalizationClassifier
from avjax.models.resnet import ResNet18

MODALITIES = ("av", "audio", "visual")
_DTYPES = {None: None, "": None, "float32": jnp.float32, "float64": jnp.float64,
           "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def _dtype(name):
    if name is None or not isinstance(name, str):
        return name
    try:
        return _DTYPES[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; choose one of {sorted(k for k in _DTYPES if k)}") from None


def memory_spec(memory_config) -> MemorySpec | None:
    """`config.model.memory` -> MemorySpec, or None when absent or `size` is 0 (no memory)."""
    if not memory_config or not memory_config.get("size"):
        return None
    # models exported before `gradient` existed differentiate the coder the solver's own way
    return build_spec(MemorySpec, {"gradient": "default"}, memory_config)


def build(config: Mapping[str, Any]):
    """Build the classifier a model config describes.

    Fields: `modality` ('av' | 'audio' | 'visual'), `num_classes`, and optionally `fusion` (one of
    FUSIONS, AV only), `width` (channel multiplier; 1.0 is the paper), `visual_pool` ('avg' | 'max'),
    `dtype` (compute dtype; None follows inputs and variables), `param_dtype`, `memory` (ExFMem: a
    `config.model.memory` section; `size` 0 or absent means none), `architecture` ('classifier' |
    'localization': the sound-source localization model, AV only).
    `module.apply(variables, image, audio, train=False)` returns `(logits, out)`.
    """
    get = config.get
    modality = get("modality", "av")
    common = dict(num_classes=int(config["num_classes"]), width=float(get("width", 1.0)),
                  dtype=_dtype(get("dtype")), param_dtype=_dtype(get("param_dtype")) or jnp.float32)
    memory = memory_spec(get("memory"))
    if memory is not None and modality != "av":
        raise ValueError(f"the external feature memory needs an audio-visual model, not {modality!r}")
    architecture = get("architecture", "classifier")
    if architecture not in ("classifier", "localization"):
        raise ValueError(f"unknown model architecture {architecture!r}; choose 'classifier' or 'localization'")
    if architecture == "localization":
        if modality != "av" or memory is not None:
            raise ValueError("the localization model is audio-visual and has no external memory")
        return LocalizationClassifier(attention=get("attention", "mean"),
                                      temperature=float(get("temperature", 0.1)),
                                      map_stride=int(get("map_stride", 32)), **common)
    if modality == "av":
        get_fusion(get("fusion", "concat"))  # validates the name
        head = get("head", "linear")
        if head not in HEADS:
            raise ValueError(f"unknown head {head!r}; choose one of {HEADS}")
        if head == "crmt" and get("fusion", "concat") != "concat":
            raise ValueError(f"the CRMT head fuses the concatenated features itself; it needs fusion 'concat', "
                             f"not {get('fusion')!r}")
        return AVClassifier(fusion=get("fusion", "concat"), visual_pool=get("visual_pool", "avg"),
                            memory=memory, head=head, **common)
    if modality == "audio":
        return AudioClassifier(**common)
    if modality == "visual":
        return VisualClassifier(visual_pool=get("visual_pool", "avg"), **common)
    raise ValueError(f"unknown modality {modality!r}; choose one of {MODALITIES}")


__all__ = ["AudioNet", "ResNet18", "AVClassifier", "AudioClassifier", "VisualClassifier", "LocalizationClassifier",
           "FUSIONS", "HEADS", "MODALITIES", "get_fusion", "build"]
