"""grain input pipelines over random-access sources: shuffled endless training, ordered evaluation.

Training: shard per host (`jax.process_index()`), shuffle by seed (a new permutation every epoch),
repeat forever, transform with a per-example rng derived from (seed, position) - so augmentation is
reproducible and independent of worker count - and batch (drop remainder). Evaluation: shard, in
order, one pass, last batch padded with `mask` = 0 so every batch has the same shape.
Iterators are checkpointable: `it.get_state()` / `it.set_state(state)` (the trainer saves it).
"""
import logging
from typing import Callable

import grain
import jax
import numpy as np

TEXT_KEYS = ("id",)
DEFAULT_READ_AHEAD = (16, 500)   # grain's ReadOptions defaults: threads decoding media ahead of training
log = logging.getLogger(__name__)


def _numeric(example):
    return {k: v for k, v in example.items() if k not in TEXT_KEYS}


def skipping(transform: Callable, on_error: str):
    """With on_error='skip', an example whose media fail to load becomes None (then filtered out)."""
    if on_error != "skip":
        return transform
    from avjax.data.layout_a import DataError
    from avjax.data.media import MediaError

    def wrapped(*args):
        try:
            return transform(*args)
        except (MediaError, DataError) as e:
            log.warning("skipped an example: %s", e)
            return None

    return wrapped


def train_dataset(source, transform: Callable, *, batch_size: int, seed: int, workers: int = 0,
                  shard_index: int | None = None, shard_count: int | None = None,
                  on_error: str = "raise", read_threads: int = -1, read_buffer: int = -1):
    """Endless, shuffled, augmented, batched training stream of this host's shard.

    `read_threads` / `read_buffer`: grain's read-ahead of examples; -1 takes the source's `read_ahead`
    (default 16 / 500, grain's own, which suit media decoding). For data already in memory (the synthetic
    set) 0 / 0 reads in order without threads: grain checks every buffered future on each element, which
    costs more than a CPU training step of the small default model spends on an example."""
    default_threads, default_buffer = getattr(source, "read_ahead", DEFAULT_READ_AHEAD)
    read_threads = default_threads if read_threads < 0 else read_threads
    read_buffer = default_buffer if read_buffer < 0 else read_buffer
    shard_index = jax.process_index() if shard_index is None else shard_index
    shard_count = jax.process_count() if shard_count is None else shard_count
    ds = grain.MapDataset.source(source)[shard_index::shard_count]
    if len(ds) < batch_size:
        raise ValueError(f"{source!r}: {len(ds)} examples on this host, fewer than batch {batch_size}")
    ds = ds.shuffle(seed=seed).repeat(None)
    transform = skipping(transform, on_error)
    ds = ds.random_map(lambda ex, rng: _maybe(_numeric, transform(ex, rng)), seed=seed)
    read = grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=read_buffer)
    it_ds = ds.to_iter_dataset(read).filter(lambda ex: ex is not None)
    it_ds = it_ds.batch(batch_size, drop_remainder=True)
    if workers > 0:
        it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
    return it_ds


def _maybe(fn, x):
    return None if x is None else fn(x)


def _pad(batch, size):
    n = len(batch["label"])
    out = {k: np.concatenate([v, np.zeros((size - n,) + v.shape[1:], v.dtype)]) if n < size else v
           for k, v in batch.items()}
    out["mask"] = (np.arange(size) < n).astype(np.float32)
    return out


def eval_dataset(source, transform: Callable | None = None, *, batch_size: int, workers: int = 0,
                 shard_index: int | None = None, shard_count: int | None = None, keep_ids=False,
                 on_error: str = "raise"):
    """One ordered pass over this host's shard; every batch has `batch_size` rows and a `mask`.

    A source with `read_in_process = True` (the decoded format) is read without worker processes: its
    examples cost less to read than to pickle back from a worker (2 cores: 1162 vs 368 examples/s)."""
    if getattr(source, "read_in_process", False):
        workers = 0
    shard_index = jax.process_index() if shard_index is None else shard_index
    shard_count = jax.process_count() if shard_count is None else shard_count
    ds = grain.MapDataset.source(source)[shard_index::shard_count]
    prep = skipping(transform if transform is not None else (lambda ex: ex), on_error)
    ds = ds.map(lambda ex: _maybe(lambda e: e if keep_ids else _numeric(e), prep(ex)))
    it_ds = ds.to_iter_dataset()
    if workers > 0:
        # Workers decode examples (worker i: examples i, i + workers, ...) and are read round-robin, so
        # examples keep the source's order (batching after the workers: batched before, each batch
        # was made of one worker's strided examples). Examples come back pickled rather than in shared
        # memory: grain frees shared-memory arrays from a deletion thread that need not run before
        # exit, which left "leaked shared_memory objects" warnings behind every evaluation.
        it_ds = grain.experimental.WithOptionsIterDataset(
            it_ds, grain.experimental.DatasetOptions(min_shm_size=NO_SHARED_MEMORY))
        it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
    it_ds = it_ds.filter(lambda ex: ex is not None)
    it_ds = it_ds.batch(batch_size, drop_remainder=False)
    return it_ds.map(lambda b: _pad_batch(b, batch_size, keep_ids))


NO_SHARED_MEMORY = 2 ** 62  # min_shm_size (bytes) no array reaches


def _pad_batch(batch, size, keep_ids):
    out = _pad(_numeric(batch), size)
    if keep_ids:
        out["id"] = batch["id"]
    return out


def num_eval_batches(source, batch_size, shard_count=None):
    shard_count = jax.process_count() if shard_count is None else shard_count
    per_host = -(-len(source) // shard_count)
    return -(-per_host // batch_size)


def exactly(batches, n: int):
    """Yield exactly `n` eval batches: hosts whose shard ran out repeat their last batch with mask 0,
    so every process joins the same number of collective steps."""
    last = None
    it = iter(batches)
    for _ in range(n):
        batch = next(it, None)
        if batch is None:
            if last is None:
                raise ValueError("this host's evaluation shard is empty")
            batch = dict(last, mask=np.zeros_like(last["mask"]))
        last = batch
        yield batch
