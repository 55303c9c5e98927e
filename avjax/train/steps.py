"""Pure train / eval steps; bound to model, optimizer and config by `make_steps`, jitted by the loop."""
import functools

import jax
import jax.numpy as jnp
import optax

from avjax.train.losses import objective


def train_step(state, batch, key, *, model, optimizer, defense_cfg):
    """-> (new state, metrics). Train-mode BatchNorm; one global-batch loss (data parallel by jit).

    Compute precision is the model's (`config.model.dtype`, e.g. 'bfloat16' on accelerators);
    parameters, BatchNorm statistics and the loss stay in float32.
    """
    del key  # the models are deterministic in training; kept for dropout-like extensions

    def loss_fn(trainable):
        variables = dict(state.variables(), params=trainable["params"])
        (logits, out), updates = model.apply(variables, batch["image"], batch["audio"], train=True,
                                             mutable=["batch_stats"])
        loss, metrics = objective(logits, out, batch["label"], defense_cfg, trainable["pcl"])
        return loss, (metrics, updates["batch_stats"])

    trainable = state.trainable()
    grads, (metrics, batch_stats) = jax.grad(loss_fn, has_aux=True)(trainable)
    updates, opt_state = optimizer.update(grads, state.opt_state, trainable)
    metrics["grad_norm"] = optax.global_norm(grads)
    return state.with_trainable(optax.apply_updates(trainable, updates)).replace(
        step=state.step + 1, batch_stats=batch_stats, opt_state=opt_state), metrics


def eval_step(state, batch, *, model, defense_cfg):
    """-> sums over the (masked) batch: correct, loss, count; plus logits for per-example records."""
    logits, out = model.apply(state.variables(), batch["image"], batch["audio"], train=False)
    mask = batch.get("mask", jnp.ones(batch["label"].shape, jnp.float32))
    _, metrics = objective(logits, out, batch["label"], defense_cfg, state.pcl, mask)
    n = jnp.sum(mask)
    return {"correct": metrics["accuracy"] * n, "loss_sum": metrics["loss"] * n, "count": n}


def make_steps(model, optimizer, defense_cfg):
    return (functools.partial(train_step, model=model, optimizer=optimizer, defense_cfg=defense_cfg),
            functools.partial(eval_step, model=model, defense_cfg=defense_cfg))
