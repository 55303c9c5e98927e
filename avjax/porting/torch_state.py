"""PyTorch state_dicts -> Flax variables, through explicit key tables (pure numpy).

Two sources are supported:
  * the standard torchvision ResNet18 file (ImageNet initialisation of the visual trunk);
  * the three files the original code (YapengTian/AV-Robustness-CVPR21) saves per checkpoint:
    `sound_<tag>.pth` (ANet, keys `features.0..27`), `frame_<tag>.pth` (ResNet18 children wrapped in
    `features.0..8`, avgpool included) and `classifier_<tag>.pth` (`fc1` on concat[visual, audio]).
    `.safetensors` files with the same keys work too.

Layouts: conv OIHW -> HWIO, conv1d OIW -> WIO, linear (out, in) -> (in, out), BN weight/bias ->
scale/bias, running_mean/var -> batch_stats mean/var; `num_batches_tracked` is dropped. Every other
source key must be consumed: a missing, extra, mis-shaped or non-finite tensor is a CheckpointError
that names it. `.pth` files are read with `torch.load(weights_only=True)` when PyTorch is installed,
else by avjax's own allow-list unpickler; neither ever executes pickled code.
"""
from __future__ import annotations

import glob
import os
import re
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from avjax.errors import UsageError
from avjax.models import AVClassifier, ResNet18
from avjax.porting import torch_pickle

TORCHVISION_IGNORED = ("fc.weight", "fc.bias")  # the ImageNet classifier is not part of the trunk


class CheckpointError(UsageError, ValueError):
    """A checkpoint file or state_dict that cannot be ported as it is."""


# ----------------------------------------------------------------------------------- key tables
# An entry: (source key, collection, flax path, layout) with layout in conv2d | conv1d | dense | vector.

def _bn(src, path):
    return [(f"{src}.weight", "params", path + ("scale",), "vector"),
            (f"{src}.bias", "params", path + ("bias",), "vector"),
            (f"{src}.running_mean", "batch_stats", path + ("mean",), "vector"),
            (f"{src}.running_var", "batch_stats", path + ("var",), "vector")]


def resnet18_table(stage_key, root=()):
    """Key table of a ResNet18 trunk; `stage_key(name)` maps a torchvision child name to its prefix."""
    table = [(f"{stage_key('conv1')}.weight", "params", root + ("conv1", "kernel"), "conv2d")]
    table += _bn(stage_key("bn1"), root + ("bn1",))
    for i in range(1, 5):
        for j in range(2):
            src, dst = f"{stage_key(f'layer{i}')}.{j}", root + (f"layer{i}_{j}",)
            for k in (1, 2):
                table.append((f"{src}.conv{k}.weight", "params", dst + (f"conv{k}", "kernel"), "conv2d"))
                table += _bn(f"{src}.bn{k}", dst + (f"bn{k}",))
            if i > 1 and j == 0:
                table.append((f"{src}.downsample.0.weight", "params",
                              dst + ("downsample_conv", "kernel"), "conv2d"))
                table += _bn(f"{src}.downsample.1", dst + ("downsample_bn",))
    return table


_FRAME_CHILDREN = {"conv1": "features.0", "bn1": "features.1", "layer1": "features.4",
                   "layer2": "features.5", "layer3": "features.6", "layer4": "features.7"}


def original_frame_table(root=("visual_net",)):
    """`frame_*.pth`: nn.Sequential(*resnet18.children()[:-1]) saved as `features.<i>`."""
    return resnet18_table(_FRAME_CHILDREN.__getitem__, root)


def original_sound_table(root=("audio_net",)):
    """`sound_*.pth`: ANet's nn.Sequential; per block conv, bn, relu, conv, bn, relu, maxpool."""
    table = []
    for block in range(1, 5):
        for j in (1, 2):
            conv_idx = 7 * (block - 1) + 3 * (j - 1)
            conv = root + (f"block{block}_conv{j}",)
            table += [(f"features.{conv_idx}.weight", "params", conv + ("kernel",), "conv1d"),
                      (f"features.{conv_idx}.bias", "params", conv + ("bias",), "vector")]
            table += _bn(f"features.{conv_idx + 1}", root + (f"block{block}_bn{j}",))
    return table


def original_classifier_table(root=("classifier",)):
    """`classifier_*.pth`: Classifier_Concat, `fc1` on cat(feat_img, feat_sound)."""
    return [("fc1.weight", "params", root + ("kernel",), "dense"),
            ("fc1.bias", "params", root + ("bias",), "vector")]


# ------------------------------------------------------------------------------------ file I/O

def load_state_dict(path) -> dict[str, np.ndarray]:
    """Read a `.pth` or `.safetensors` state_dict into {key: numpy array}, refusing anything else."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.endswith(".safetensors"):
        from safetensors import SafetensorError
        from safetensors.numpy import load_file
        try:
            return dict(load_file(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from e
    obj = _load_pth(path)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: not a plain state_dict (the file holds a {type(obj).__name__})")
    out = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            raise CheckpointError(f"{path}: not a plain state_dict (key {key!r} is not a string)")
        if hasattr(value, "detach"):  # a torch.Tensor
            value = value.detach().cpu().numpy()
        if not isinstance(value, np.ndarray):
            raise CheckpointError(
                f"{path}: not a plain state_dict (entry {key!r} is a {type(value).__name__}, not a "
                "tensor; is this a training checkpoint that wraps the state_dict?)")
        out[key] = value
    return out


def _load_pth(path):
    try:
        import torch
    except ImportError:
        torch = None
    try:
        if torch is not None:
            return torch.load(path, map_location="cpu", weights_only=True)
        if not torch_pickle.is_zip_checkpoint(path):
            raise CheckpointError(
                f"{path}: not a zip-format torch.save file; legacy .pth files need PyTorch "
                "(pip install 'avjax[torch]') or conversion to .safetensors")
        return torch_pickle.load_zip_state_dict(path)
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - any reader failure is reported with the file name
        raise CheckpointError(
            f"{path}: cannot be read as a PyTorch state_dict ({type(e).__name__}: {e})") from e


def _strip_module_prefix(state_dict):
    """Accept files saved from an nn.DataParallel wrapper (every key prefixed by `module.`)."""
    if state_dict and all(k.startswith("module.") for k in state_dict):
        return {k[len("module."):]: v for k, v in state_dict.items()}
    return state_dict


# --------------------------------------------------------------------------------- conversion

def _to_flax_layout(array, layout):
    if layout == "conv2d":
        return array.transpose(2, 3, 1, 0) if array.ndim == 4 else None
    if layout == "conv1d":
        return array.transpose(2, 1, 0) if array.ndim == 3 else None
    if layout == "dense":
        return array.T if array.ndim == 2 else None
    return array if array.ndim == 1 else None


def _torch_shape(flax_shape, layout):
    if layout == "conv2d":
        h, w, i, o = flax_shape
        return (o, i, h, w)
    if layout == "conv1d":
        w, i, o = flax_shape
        return (o, i, w)
    if layout == "dense":
        return tuple(flax_shape[::-1])
    return tuple(flax_shape)


def _get(tree, path):
    for p in path:
        tree = tree[p]
    return tree


def _set(tree, path, value):
    for p in path[:-1]:
        tree = tree.setdefault(p, {})
    tree[path[-1]] = value


def port_state_dict(state_dict, table, expected, source, *, ignored=(), dtype=None):
    """Fill a Flax variable tree from `state_dict` through `table`; `expected` gives leaf shapes.

    Every table key must be present, every source key consumed (or listed in `ignored`; BatchNorm
    `num_batches_tracked` counters are dropped), every shape right and every value finite.
    `dtype` None keeps each tensor's floating dtype (a float64 checkpoint stays float64).
    """
    state_dict = _strip_module_prefix(dict(state_dict))
    wanted = {entry[0] for entry in table}
    counters = {k for k in state_dict if k.endswith(".num_batches_tracked")
                and k[: -len("num_batches_tracked")] + "running_mean" in wanted}
    missing = sorted(wanted - state_dict.keys())
    extra = sorted(state_dict.keys() - wanted - counters - set(ignored))
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if extra:
        problems.append(f"unexpected keys {extra}")
    if problems:
        raise CheckpointError(f"{source}: " + "; ".join(problems))
    variables: dict[str, Any] = {}
    for key, collection, path, layout in table:
        want = tuple(_get(expected[collection], path).shape)
        array = np.asarray(state_dict[key])
        value = _to_flax_layout(array, layout)
        if value is None or value.shape != want:
            raise CheckpointError(f"{source}: key {key!r} has shape {tuple(array.shape)}, "
                                  f"expected {_torch_shape(want, layout)}")
        if not np.issubdtype(value.dtype, np.floating):
            raise CheckpointError(f"{source}: key {key!r} has dtype {value.dtype}, expected floating point")
        if not np.all(np.isfinite(value)):
            raise CheckpointError(f"{source}: key {key!r} holds non-finite values")
        _set(variables.setdefault(collection, {}), path,
             np.ascontiguousarray(value, dtype=dtype or value.dtype))
    covered = {(collection,) + path for _, collection, path, _ in table}
    for leaf_path, _ in jax.tree_util.tree_flatten_with_path(expected)[0]:
        names = tuple(k.key for k in leaf_path)
        if names not in covered:  # a table bug, not a user error
            raise AssertionError(f"key table leaves model variable {'/'.join(names)} unset")
    return variables


def _expected_shapes(module, image_size=32, audio_len=4096):
    image = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
    if isinstance(module, ResNet18):
        return jax.eval_shape(lambda: module.init(jax.random.key(0), image))
    audio = jnp.zeros((1, audio_len), jnp.float32)
    return jax.eval_shape(lambda: module.init(jax.random.key(0), image, audio))


def resnet18_from_torchvision(state_dict_or_path, *, dtype=None):
    """Flax variables (`params`, `batch_stats`) of the avjax ResNet18 trunk from torchvision's file.

    The ImageNet `fc` layer is not part of the trunk and is dropped explicitly.
    """
    source = "torchvision ResNet18 state_dict"
    if isinstance(state_dict_or_path, (str, os.PathLike)):
        source = os.fspath(state_dict_or_path)
        state_dict_or_path = load_state_dict(state_dict_or_path)
    expected = _expected_shapes(ResNet18())
    return port_state_dict(state_dict_or_path, resnet18_table(lambda name: name), expected, source,
                           ignored=TORCHVISION_IGNORED, dtype=dtype)


_PARTS = ("sound", "frame", "classifier")
_EXTS = (".pth", ".safetensors")


def find_original_files(path, tag: str | None = None) -> dict[str, str]:
    """Locate `sound_*`, `frame_*`, `classifier_*` of one checkpoint.

    `path` is a directory (with `tag`, e.g. 'best' or 'latest'; without, the tag must be unambiguous,
    'best' preferred), one of the three files (its siblings with the same tag are used), or a
    mapping {'sound': ..., 'frame': ..., 'classifier': ...}.
    """
    if isinstance(path, Mapping):
        missing = [p for p in _PARTS if p not in path]
        if missing:
            raise CheckpointError(f"original checkpoint mapping lacks {missing}")
        return {p: os.fspath(path[p]) for p in _PARTS}
    path = os.fspath(path)
    if os.path.isfile(path):
        name = os.path.basename(path)
        m = re.fullmatch(r"(sound|frame|classifier)_(.+)(\.pth|\.safetensors)", name)
        if not m:
            raise CheckpointError(f"{path}: expected a file named sound_<tag>, frame_<tag> or "
                                  "classifier_<tag> (.pth or .safetensors)")
        directory, tag, ext = os.path.dirname(path), m.group(2), m.group(3)
        files = {p: os.path.join(directory, f"{p}_{tag}{ext}") for p in _PARTS}
    elif os.path.isdir(path):
        candidates = {}
        for f in sorted(glob.glob(os.path.join(path, "*"))):
            m = re.fullmatch(r"(sound|frame|classifier)_(.+)(\.pth|\.safetensors)", os.path.basename(f))
            if m:
                candidates.setdefault(m.group(2), {})[m.group(1)] = f
        complete = {t: fs for t, fs in candidates.items() if len(fs) == 3}
        if tag is None:
            tag = "best" if "best" in complete else (next(iter(complete)) if len(complete) == 1 else None)
            if tag is None:
                raise CheckpointError(
                    f"{path}: {'no complete' if not complete else 'several'} sound_/frame_/classifier_ "
                    f"checkpoint sets (found tags {sorted(candidates)}); pass tag=")
        if tag not in complete:
            have = sorted(candidates.get(tag, {}))
            raise CheckpointError(f"{path}: checkpoint set {tag!r} incomplete (found {have}, "
                                  f"need {list(_PARTS)})")
        files = complete[tag]
    else:
        raise CheckpointError(f"{path}: no such file or directory")
    for part, f in files.items():
        if not os.path.isfile(f):
            raise CheckpointError(f"{f}: missing {part} file of the original checkpoint")
    return files


def load_original_checkpoint(path, num_classes: int | None = None, *, tag: str | None = None,
                             dtype=None):
    """-> (module, variables) of the avjax model equal to an original-code checkpoint.

    The module is an AVClassifier with the concat head and average visual pooling (what the released
    code computes: torchvision's avgpool is kept). `num_classes`, when given, must match `fc1`.
    `dtype` None keeps the checkpoint's precision (float32 files give float32 variables).
    """
    files = find_original_files(path, tag)
    state = {part: load_state_dict(f) for part, f in files.items()}
    fc = _strip_module_prefix(state["classifier"]).get("fc1.weight")
    if fc is None or np.ndim(fc) != 2:
        raise CheckpointError(f"{files['classifier']}: no 2-D fc1.weight: not a Classifier_Concat file")
    if num_classes is None:
        num_classes = int(fc.shape[0])
    elif fc.shape[0] != num_classes:
        raise CheckpointError(f"{files['classifier']}: fc1 has {fc.shape[0]} classes, "
                              f"expected num_classes={num_classes}")
    module = AVClassifier(num_classes=num_classes, fusion="concat", visual_pool="avg")
    return module, port_original_states(state, module, sources=files, dtype=dtype)


def port_original_states(states, module, *, sources=None, dtype=None):
    """Variables of `module` (a concat AVClassifier, any width) from the three original state_dicts."""
    sources = sources or {part: f"{part} state_dict" for part in _PARTS}
    expected = _expected_shapes(module)
    variables: dict[str, Any] = {"params": {}, "batch_stats": {}}
    for part, table in (("sound", original_sound_table()), ("frame", original_frame_table()),
                        ("classifier", original_classifier_table())):
        root = table[0][2][0]
        sub = {c: {root: expected[c][root]} for c in ("params", "batch_stats") if root in expected[c]}
        ported = port_state_dict(states[part], table, sub, sources[part], dtype=dtype)
        for collection, tree in ported.items():
            variables[collection].update(tree)
    return variables
