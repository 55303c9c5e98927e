"""avjax variables -> PyTorch state_dicts in the original code's and torchvision's layouts.

The inverse of `torch_state`, through the same key tables: a model trained or attacked in avjax can be
handed to the released PyTorch code (`sound_/frame_/classifier_<tag>.pth`, loadable with its
`load_state_dict`, strict) or to torchvision (`resnet18_state_dict`: the trunk's keys, without the ImageNet
`fc`, so `load_state_dict(..., strict=False)` there). Only the architecture the released code has can be
written in its layout: the concat head on average-pooled ResNet18 features.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from avjax.models import AVClassifier
from avjax.porting import torch_state

FORMATS = (".pth", ".safetensors")


def _from_flax_layout(array, layout):
    if layout == "conv2d":
        return array.transpose(3, 2, 0, 1)
    if layout == "conv1d":
        return array.transpose(2, 1, 0)
    if layout == "dense":
        return array.T
    return array


def state_dict_from_variables(variables, table) -> dict[str, np.ndarray]:
    """{PyTorch key: array} for every entry of a key table; each BatchNorm also gets the
    `num_batches_tracked` counter PyTorch's strict loading expects (0: the count is not kept by avjax)."""
    out = {}
    for key, collection, path, layout in table:
        try:
            value = torch_state._get(variables[collection], path)
        except KeyError as e:
            raise ValueError(f"variables lack {collection}/{'/'.join(path)} (needed for {key!r})") from e
        out[key] = np.ascontiguousarray(_from_flax_layout(np.asarray(value), layout))
        if key.endswith(".running_mean"):
            out[key[: -len("running_mean")] + "num_batches_tracked"] = np.array(0, np.int64)
    return out


def original_state_dicts(module, variables) -> dict[str, dict[str, np.ndarray]]:
    """{'sound', 'frame', 'classifier'}: the three state_dicts the released code saves for `module`."""
    if not (isinstance(module, AVClassifier) and module.fusion == "concat" and module.visual_pool == "avg"
            and module.head == "linear"):
        raise ValueError("the released code has one architecture: an AVClassifier with fusion='concat', "
                         f"visual_pool='avg' and the linear head (got {module!r})")
    return {"sound": state_dict_from_variables(variables, torch_state.original_sound_table()),
            "frame": state_dict_from_variables(variables, torch_state.original_frame_table()),
            "classifier": state_dict_from_variables(variables, torch_state.original_classifier_table())}


def resnet18_state_dict(trunk_variables) -> dict[str, np.ndarray]:
    """torchvision ResNet18 keys of a visual trunk's variables (`params`, `batch_stats` of a ResNet18)."""
    return state_dict_from_variables(trunk_variables, torch_state.resnet18_table(lambda name: name))


def save_state_dict(state_dict, path) -> str:
    """Write `.safetensors` (no PyTorch needed) or `.pth` (`torch.save`; needs the torch extra)."""
    path = os.fspath(path)
    arrays = {k: np.ascontiguousarray(v) for k, v in state_dict.items()}
    if path.endswith(".safetensors"):
        from safetensors.numpy import save_file
        save_file(arrays, path)
    elif path.endswith(".pth"):
        try:
            import torch
        except ImportError as e:
            raise ImportError(f"{path}: writing .pth needs PyTorch (pip install 'avjax[torch]'); "
                              "or write .safetensors, which avjax and PyTorch both read") from e
        torch.save({k: torch.from_numpy(v) for k, v in arrays.items()}, path)
    else:
        raise ValueError(f"{path}: write a {' or '.join(FORMATS)} file")
    return path


def save_original_checkpoint(module, variables, out_dir, *, tag: str = "best",
                             ext: str = ".safetensors") -> dict[str, str]:
    """Write `sound_<tag>`, `frame_<tag>`, `classifier_<tag>` (`ext`) into `out_dir`; -> their paths."""
    if ext not in FORMATS:
        raise ValueError(f"ext must be one of {FORMATS}, got {ext!r}")
    os.makedirs(out_dir, exist_ok=True)
    paths: dict[str, Any] = {}
    for part, state_dict in original_state_dicts(module, variables).items():
        paths[part] = save_state_dict(state_dict, os.path.join(out_dir, f"{part}_{tag}{ext}"))
    return paths
