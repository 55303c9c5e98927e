"""Building an external feature memory (ExFMem) from a trained run.

    banks = collect_features(module, variables, sources, transforms, size=1024, source="train_mode", ...)

`source='train_mode'` follows the released dump: encoder features of training examples in shuffled
order, augmented, with train-mode BatchNorm (batch statistics; the running statistics are not updated),
the first `size` kept. The released code collected them *during* the last epoch while the weights still
changed; avjax takes them from the run's latest weights in one extra pass (deterministic and resumable).
`source='eval_best'`: eval-mode features of the best weights over the un-augmented training split,
in the same shuffled order.
"""
import functools

import jax
import numpy as np

from avjax import parallel
from avjax.data import pipeline

SOURCES = ("train_mode", "eval_best")


def _features(module, variables, image, audio, label, *, train):
    """-> (f_v, f_a, label): the labels come back replicated with the features."""
    if train:  # batch statistics; the running-statistics update is discarded
        features, _ = module.apply(variables, image, audio, train=True, method="raw_features",
                                   mutable=["batch_stats"])
        return (*features, label)
    return (*module.apply(variables, image, audio, train=False, method="raw_features"), label)


def collect_features(module, variables, sources, transforms, *, size, source, batch_size, seed, mesh,
                     workers=0):
    """-> {'visual': (size, dim), 'audio': (size, dim)} float32 numpy banks (identical on every host), and
    'labels' (size,): the class of the example each atom was stored from (for diagnostics, not the model)."""
    if source not in SOURCES:
        raise ValueError(f"unknown memory source {source!r}; choose one of {SOURCES}")
    train = source == "train_mode"
    train_split = sources["train"]
    if len(train_split) < size:
        raise ValueError(f"the memory needs {size} training examples, the train split has {len(train_split)}")
    if train:
        transform = transforms["train"]
    else:  # un-augmented examples, same shuffled order
        evaluate = transforms["eval"] or (lambda ex: ex)
        transform = lambda ex, rng: evaluate(ex)  # noqa: E731
    local_batch = parallel.check_batch_size(batch_size, mesh)
    ds = pipeline.train_dataset(train_split, transform, batch_size=local_batch, seed=seed, workers=workers)
    rep, dat = parallel.replicated(mesh), parallel.data_sharded(mesh)
    apply = jax.jit(functools.partial(_features, module, train=train), in_shardings=(rep, dat, dat, dat),
                    out_shardings=rep)
    variables = parallel.replicate(variables, mesh)
    banks = {"visual": [], "audio": [], "labels": []}
    count = 0
    for local in ds:
        batch = parallel.global_batch(local, mesh)
        f_v, f_a, labels = apply(variables, batch["image"], batch["audio"], batch["label"])
        banks["visual"].append(np.asarray(jax.device_get(f_v), np.float32))
        banks["audio"].append(np.asarray(jax.device_get(f_a), np.float32))
        banks["labels"].append(np.asarray(jax.device_get(labels), np.int32))
        count += batch_size
        if count >= size:
            break
    return {k: np.concatenate(v)[:size] for k, v in banks.items()}
