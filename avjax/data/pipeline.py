"""grain input pipelines over random-access sources: shuffled endless training, ordered evaluation.

Training: shard per host (`jax.process_index()`), shuffle by seed (a new permutation every epoch),
repeat forever, transform with a per-example rng derived from (seed, position) - so augmentation is
reproducible and independent of worker count - and batch (drop remainder). Evaluation: shard, in
order, one pass, last batch padded with `mask` = 0 so every batch has the same shape.
Iterators are checkpointable: `it.get_state()` / `it.set_state(state)` (the trainer saves it).
"""
from typing import Callable

import grain
import jax
import numpy as np

TEXT_KEYS = ("id",)


def _numeric(example):
    return {k: v for k, v in example.items() if k not in TEXT_KEYS}


def train_dataset(source, transform: Callable, *, batch_size: int, seed: int, workers: int = 0,
                  shard_index: int | None = None, shard_count: int | None = None):
    """Endless, shuffled, augmented, batched training stream of this host's shard."""
    shard_index = jax.process_index() if shard_index is None else shard_index
    shard_count = jax.process_count() if shard_count is None else shard_count
    ds = grain.MapDataset.source(source)[shard_index::shard_count]
    if len(ds) < batch_size:
        raise ValueError(f"{source!r}: {len(ds)} examples on this host, fewer than batch {batch_size}")
    ds = ds.shuffle(seed=seed).repeat(None)
    ds = ds.random_map(lambda ex, rng: _numeric(transform(ex, rng)), seed=seed)
    ds = ds.batch(batch_size, drop_remainder=True)
    it_ds = ds.to_iter_dataset()
    if workers > 0:
        it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
    return it_ds


def _pad(batch, size):
    n = len(batch["label"])
    out = {k: np.concatenate([v, np.zeros((size - n,) + v.shape[1:], v.dtype)]) if n < size else v
           for k, v in batch.items()}
    out["mask"] = (np.arange(size) < n).astype(np.float32)
    return out


def eval_dataset(source, transform: Callable | None = None, *, batch_size: int, workers: int = 0,
                 shard_index: int | None = None, shard_count: int | None = None, keep_ids=False):
    """One ordered pass over this host's shard; every batch has `batch_size` rows and a `mask`."""
    shard_index = jax.process_index() if shard_index is None else shard_index
    shard_count = jax.process_count() if shard_count is None else shard_count
    ds = grain.MapDataset.source(source)[shard_index::shard_count]
    prep = (lambda ex: transform(ex)) if transform is not None else (lambda ex: ex)
    ds = ds.map(prep if keep_ids else (lambda ex: _numeric(prep(ex))))
    ds = ds.batch(batch_size, drop_remainder=False)
    ds = ds.map(lambda b: _pad(b, batch_size) if not keep_ids else
                dict(_pad(_numeric(b), batch_size), id=b["id"]))
    it_ds = ds.to_iter_dataset()
    if workers > 0:
        it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
    return it_ds


def num_eval_batches(source, batch_size, shard_count=None):
    shard_count = jax.process_count() if shard_count is None else shard_count
    per_host = -(-len(source) // shard_count)
    return -(-per_host // batch_size)
