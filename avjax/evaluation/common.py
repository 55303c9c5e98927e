"""What every evaluation shares: the settings, per-example correctness, test batches over hosts, gathering.

    for index, batch, mask, seen in eval_batches(source, transform, batch_size=..., mesh=..., workers=...,
                                                max_examples=..., desc="attack av"):
        hits = gather(correctness(fns, batch["image"], batch["audio"], batch["label"]))[mask]
"""
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from tqdm import tqdm

from avjax import parallel
from avjax.data import pipeline

SETTINGS = ("xA", "xV", "xAV")
NON_FINITE = -1  # a per-example result whose logits were not finite: evaluation stops with an error
# right by the full model where the attack reported a success: counted as right, and flagged (the attack's view of
# the model and the model disagree: batch-mates, a surrogate, a tie)
DISAGREE = 2


def rescored(fns, adv_image, adv_audio, label, reported):
    """Correctness of the full model at an attack's points; DISAGREE where it is right but the attack `reported`
    a success there."""
    right = correctness(fns, adv_image, adv_audio, label)
    return jnp.where(reported & (right == 1), jnp.int8(DISAGREE), right)


def correctness(fns, image, audio, label):
    """(B,) int8: 1 where the model is right, 0 where wrong, NON_FINITE where its logits are not finite."""
    return logit_correctness(fns(image, audio)[0], label)


def logit_correctness(logits, label):
    right = (jnp.argmax(logits, -1) == label).astype(jnp.int8)
    return jnp.where(jnp.all(jnp.isfinite(logits), -1), right, jnp.int8(NON_FINITE))


def gather(x):
    """A global (data-sharded) array as one numpy array on every host."""
    if jax.process_count() == 1:
        return np.asarray(x)
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def eval_batches(source, transform, *, batch_size, mesh, workers, max_examples, desc):
    """Yield (index, global batch, mask (B,) bool, examples seen before it) over a test source, with a
    progress bar; stops once `max_examples` (0: all) real examples were yielded."""
    local_batch = parallel.check_batch_size(batch_size, mesh)
    n_batches = pipeline.num_eval_batches(source, local_batch)
    if max_examples:
        n_batches = min(n_batches, -(-max_examples // batch_size))
    batches = pipeline.eval_dataset(source, transform, batch_size=local_batch, workers=workers)
    bar = tqdm(total=n_batches, desc=desc, unit="batch", disable=jax.process_index() != 0, mininterval=5)
    seen = 0
    try:
        for index, local in enumerate(pipeline.exactly(batches, n_batches)):
            batch = parallel.global_batch(local, mesh)
            mask = gather(batch["mask"]) > 0
            yield index, batch, mask, seen
            seen += int(mask.sum())
            bar.update(1)
            if max_examples and seen >= max_examples:
                break
    finally:
        bar.close()
