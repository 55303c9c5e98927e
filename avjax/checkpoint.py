"""Run checkpoints: the resume points of a training run (orbax CheckpointManager).

Exported models (the best weights of a run, converted originals) are `avjax.model_dir`.
"""
import os

import jax
import orbax.checkpoint as ocp


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
