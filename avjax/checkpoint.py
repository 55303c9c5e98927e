"""Model checkpoints on disk: a model config (JSON) beside its variables (orbax).

A model directory holds `model.json` (the `avjax.models.build` config) and `variables/` (an orbax
StandardCheckpointer tree of `params` and `batch_stats`). `python -m avjax.convert_original` writes
one from the original PyTorch files, so the authors' released models can be evaluated with avjax.
"""
import json
import os

import jax
import numpy as np
import orbax.checkpoint as ocp

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
    return build(model_config), model_config, variables


class RunCheckpoints:
    """orbax CheckpointManager for a training run: train state, best-on-validation variables, meta.

    `meta` (JSON) carries the epoch, the best validation accuracy and epoch, the validation history
    and the data iterator state, so a restarted run continues exactly where the saved one stopped.
    Saves are synchronous: on small CPU machines background threads compete with training, and a
    kill can then never leave a half-written step behind as the latest checkpoint.
    """

    ITEMS = ("state", "best", "meta")

    def __init__(self, directory, max_to_keep: int = 2):
        self.directory = os.path.abspath(os.fspath(directory))
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                               enable_async_checkpointing=False)
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=self.ITEMS)

    def latest_step(self):
        return self.manager.latest_step()

    def save(self, step: int, state, best, meta: dict):
        self.manager.save(int(step), args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), best=ocp.args.StandardSave(best),
            meta=ocp.args.JsonSave(meta)))
        self.manager.wait_until_finished()

    def restore(self, state_like, best_like, step=None):
        """-> (state, best, meta) of `step` (default latest), shaped and sharded like the templates."""
        step = self.manager.latest_step() if step is None else step
        abstract = lambda tree: jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)  # noqa: E731
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract(state_like)),
            best=ocp.args.StandardRestore(abstract(best_like)), meta=ocp.args.JsonRestore()))
        return restored["state"], restored["best"], restored["meta"]

    def close(self):
        self.manager.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
