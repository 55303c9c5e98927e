"""Run checkpoints: the resume points of a training run (orbax CheckpointManager).

Exported models (the best weights of a run, converted originals) are `avjax.model_dir`.
"""
import hashlib
import logging
import os
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)

CHECKSUM = "checksum"  # meta key: SHA-256 of the saved state and best variables


def tree_digest(tree) -> str:
    """SHA-256 over every leaf's path, dtype, shape and bytes (one process's copy of replicated arrays).

    orbax restores a checkpoint whose data bytes were overwritten without complaint (measured: flipped
    bytes in a data file come back as garbage values), so every save records this digest and every
    restore checks it."""
    h = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        value = np.ascontiguousarray(local_value(leaf))
        h.update(f"{jax.tree_util.keystr(path)}|{value.dtype.str}|{value.shape}|".encode())
        h.update(value.tobytes())
    return h.hexdigest()


def local_value(leaf) -> np.ndarray:
    """This process's copy of a leaf as numpy (replicated training state: every shard is the whole value)."""
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
        leaf = leaf.addressable_data(0)
    return np.asarray(leaf)


class UnreadableCheckpoint(ValueError):
    """A checkpoint step that orbax cannot read, or whose values do not match their recorded digest."""


class RunCheckpoints:
    """orbax CheckpointManager for a training run: train state, best-on-validation variables, meta.

    `meta` (JSON) carries the epoch, the best validation accuracy and epoch, the validation history,
    the data iterator state and the digest of the saved arrays, so a restarted run continues exactly
    where the saved one stopped, and a damaged step is detected instead of trained on.
    Saves are synchronous: on small CPU machines background threads compete with training, and a
    kill can then never leave a half-written step behind as the latest checkpoint.
    """

    ITEMS = ("state", "best", "meta")

    def __init__(self, directory, max_to_keep: int = 2):
        self.directory = os.path.abspath(os.fspath(directory))
        self.unreadable_dir = self.directory.rstrip(os.sep) + ".unreadable"
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                               enable_async_checkpointing=False)
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=self.ITEMS)

    def latest_step(self):
        return self.manager.latest_step()

    def save(self, step: int, state, best, meta: dict):
        meta = dict(meta, **{CHECKSUM: {"state": tree_digest(state), "best": tree_digest(best)}})
        self.manager.save(int(step), args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), best=ocp.args.StandardSave(best),
            meta=ocp.args.JsonSave(meta)))
        self.manager.wait_until_finished()

    def restore(self, state_like, best_like, step=None):
        """-> (state, best, meta) of `step` (default latest), shaped and sharded like the templates.

        Raises UnreadableCheckpoint when the step cannot be read or its values fail their digest."""
        step = self.manager.latest_step() if step is None else step
        abstract = lambda tree: jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)  # noqa: E731
        where = os.path.join(self.directory, str(step))
        try:
            restored = self.manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract(state_like)),
                best=ocp.args.StandardRestore(abstract(best_like)), meta=ocp.args.JsonRestore()))
        except Exception as e:  # orbax, tensorstore and json raise many types for damaged files
            raise UnreadableCheckpoint(f"{where}: cannot be read ({type(e).__name__}: {str(e)[:300]})") from e
        meta = restored["meta"]
        for item in ("state", "best"):
            expected = (meta.get(CHECKSUM) or {}).get(item)
            if expected is not None and tree_digest(restored[item]) != expected:
                raise UnreadableCheckpoint(f"{where}: the restored '{item}' does not match the digest recorded "
                                           "when it was saved (damaged data files)")
        return restored["state"], restored["best"], meta

    def restore_latest_good(self, state_like, best_like):
        """-> (state, best, meta, step) of the newest step that reads and passes its digest.

        Damaged newer steps are reported with a warning and moved to `<directory>.unreadable/` (kept for
        inspection, out of the way of the steps the resumed run saves again). Raises UnreadableCheckpoint,
        moving nothing, when no step can be restored (e.g. the templates no longer fit any step)."""
        errors = []
        for step in sorted(self.manager.all_steps(), reverse=True):
            try:
                state, best, meta = self.restore(state_like, best_like, step)
            except UnreadableCheckpoint as e:
                errors.append((step, e))
                continue
            if errors:
                self._move_aside([s for s, _ in errors])
                log.warning("resuming from step %d: newer checkpoint step(s) could not be restored and were "
                            "moved to %s:\n%s", step, self.unreadable_dir, "\n".join(str(e) for _, e in errors))
            return state, best, meta, step
        raise UnreadableCheckpoint(f"{self.directory}: no checkpoint step can be restored:\n" +
                                   "\n".join(str(e) for _, e in errors))

    def _move_aside(self, steps):
        if jax.process_index() == 0:
            os.makedirs(self.unreadable_dir, exist_ok=True)
            for step in steps:
                target = os.path.join(self.unreadable_dir, str(step))
                if os.path.exists(target):
                    shutil.rmtree(target)
                shutil.move(os.path.join(self.directory, str(step)), target)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils
            multihost_utils.sync_global_devices("avjax-checkpoint-move-aside")
        self.manager.reload()

    def close(self):
        self.manager.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
