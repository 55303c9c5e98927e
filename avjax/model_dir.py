"""Exported models on disk: a model config (JSON) beside its variables (orbax).

A model directory holds `model.json` (the `avjax.models.build` config) and `variables/` (an orbax
StandardCheckpointer tree of the model's collections: `params`, `batch_stats` and, for a defended
model, its frozen `memory`). `python -m avjax.porting.convert` writes one from the original PyTorch
files, so the authors' released models can be evaluated with avjax. Run checkpoints (resume points of
training) are `avjax.checkpoint`.
"""
import json
import os

import jax
import numpy as np
import orbax.checkpoint as ocp

from avjax.defenses.memory import check_memory
from avjax.models import build

MODEL_CONFIG = "model.json"
VARIABLES = "variables"


def save_model(directory, model_config: dict, variables) -> str:
    """Write `model_config` and `variables` under `directory` (created; must not hold a model yet)."""
    directory = os.path.abspath(os.fspath(directory))
    if os.path.exists(os.path.join(directory, MODEL_CONFIG)):
        raise FileExistsError(f"{directory} already holds a model ({MODEL_CONFIG}); choose another")
    os.makedirs(directory, exist_ok=True)
    build(model_config)  # refuse a config that does not build
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(os.path.join(directory, VARIABLES), jax.tree.map(np.asarray, variables))
        ckptr.wait_until_finished()
    with open(os.path.join(directory, MODEL_CONFIG), "w") as f:
        json.dump(dict(model_config), f, indent=2, sort_keys=True)
    return directory


def load_model(directory):
    """-> (module, model_config, variables) of a directory written by `save_model`."""
    directory = os.path.abspath(os.fspath(directory))
    config_path = os.path.join(directory, MODEL_CONFIG)
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"{directory}: no {MODEL_CONFIG}; not an avjax model directory")
    with open(config_path) as f:
        model_config = json.load(f)
    with ocp.StandardCheckpointer() as ckptr:
        variables = ckptr.restore(os.path.join(directory, VARIABLES))
    module = build(model_config)
    spec = getattr(module, "memory", None)
    if spec is not None:
        check_memory(variables.get("memory", {}), spec, {m: module.feature_dim for m in ("visual", "audio")},
                     directory)
    elif "memory" in variables:
        raise ValueError(f"{directory}: the variables hold a memory but {MODEL_CONFIG} describes no "
                         "memory (model.memory.size 0)")
    return module, model_config, variables
