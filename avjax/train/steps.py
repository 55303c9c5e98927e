"""Pure train / eval steps; bound to model, optimizer and config by `make_steps`, jitted by the loop."""
import functools

import jax
import jax.numpy as jnp
import optax

from avjax.train import adversarial
from avjax.train.losses import objective


NOISE_STREAM = 1  # the noise's random stream: fold_in(key, NOISE_STREAM), apart from the attack's random start


def with_noise(image, audio, key, noise_cfg):
    """The inputs plus N(0, sigma^2) noise per modality (config.train.noise), unclamped; sigma 0: untouched."""
    k_visual, k_audio = jax.random.split(key)
    if noise_cfg["sigma_visual"]:
        image = image + noise_cfg["sigma_visual"] * jax.random.normal(k_visual, image.shape, image.dtype)
    if noise_cfg["sigma_audio"]:
        audio = audio + noise_cfg["sigma_audio"] * jax.random.normal(k_audio, audio.shape, audio.dtype)
    return image, audio


def train_step(state, batch, key, *, model, optimizer, defense_cfg, adversarial_cfg=None, contrast_cfg=None,
               noise_cfg=None):
    """-> (new state, metrics). Train-mode BatchNorm; one global-batch loss (data parallel by jit).

    With an `adversarial_cfg` threat (config.train.adversarial, avjax.train.adversarial) the loss is taken on the
    batch attacked by PGD from a random start drawn from `key` (plus `clean_weight` x the clean loss). With a
    `noise_cfg` (config.train.noise) the model trains on its inputs plus Gaussian noise (after the attack, where
    both are set).
    Compute precision is the model's (`config.model.dtype`, e.g. 'bfloat16' on accelerators);
    parameters, BatchNorm statistics and the loss stay in float32.
    """
    inputs = batch
    robust = adversarial_cfg is not None and bool(adversarial_cfg["threat"])
    if robust:
        image, audio = adversarial.adversarial_inputs(model, state.variables(), batch, key, adversarial_cfg)
        inputs = dict(batch, image=image, audio=audio)
    if noise_cfg is not None and any(noise_cfg.values()):
        image, audio = with_noise(inputs["image"], inputs["audio"], jax.random.fold_in(key, NOISE_STREAM), noise_cfg)
        inputs = dict(inputs, image=image, audio=audio)

    def loss_fn(trainable):
        variables = dict(state.variables(), params=trainable["params"])
        (logits, out), updates = model.apply(variables, inputs["image"], inputs["audio"], train=True,
                                             mutable=["batch_stats"])
        loss, metrics = objective(logits, out, batch["label"], defense_cfg, trainable["pcl"],
                                  contrast_cfg=contrast_cfg)
        if robust and adversarial_cfg["clean_weight"]:
            w = adversarial_cfg["clean_weight"]
            (clean_logits, clean_out), _ = model.apply(variables, batch["image"], batch["audio"], train=True,
                                                       mutable=["batch_stats"])
            clean_loss, clean_metrics = objective(clean_logits, clean_out, batch["label"], defense_cfg,
                                                  trainable["pcl"], contrast_cfg=contrast_cfg)
            loss = (1.0 - w) * loss + w * clean_loss
            metrics = dict(metrics, loss=loss, clean_accuracy=clean_metrics["accuracy"])
        return loss, (metrics, updates["batch_stats"])

    trainable = state.trainable()
    grads, (metrics, batch_stats) = jax.grad(loss_fn, has_aux=True)(trainable)
    updates, opt_state = optimizer.update(grads, state.opt_state, trainable)
    metrics["grad_norm"] = optax.global_norm(grads)
    return state.with_trainable(optax.apply_updates(trainable, updates)).replace(
        step=state.step + 1, batch_stats=batch_stats, opt_state=opt_state), metrics


def eval_step(state, batch, *, model, defense_cfg, contrast_cfg=None):
    """-> sums over the (masked) batch: correct, loss, count; plus logits for per-example records."""
    logits, out = model.apply(state.variables(), batch["image"], batch["audio"], train=False)
    mask = batch.get("mask", jnp.ones(batch["label"].shape, jnp.float32))
    _, metrics = objective(logits, out, batch["label"], defense_cfg, state.pcl, mask, contrast_cfg)
    n = jnp.sum(mask)
    return {"correct": metrics["accuracy"] * n, "loss_sum": metrics["loss"] * n, "count": n}


def make_steps(model, optimizer, defense_cfg, adversarial_cfg=None, contrast_cfg=None, noise_cfg=None):
    return (functools.partial(train_step, model=model, optimizer=optimizer, defense_cfg=defense_cfg,
                              adversarial_cfg=adversarial_cfg, contrast_cfg=contrast_cfg, noise_cfg=noise_cfg),
            functools.partial(eval_step, model=model, defense_cfg=defense_cfg, contrast_cfg=contrast_cfg))
