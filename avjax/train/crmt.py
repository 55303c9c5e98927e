"""CRMT's second step (avjax.defenses.crmt), run once after a CRMT run's training:

1. per modality m and class c, L[m, c] = the largest |d o_m,c / d x_m|_2 over the training examples (un-augmented,
   eval-mode BatchNorm), with x_v the pixels in [0, 1] and x_a the waveform samples;
2. the encoders and W frozen, the fusion weights a_v, a_a trained alone by SGD to maximise the mean bound r(x)
   against the runner-up class (`avjax.defenses.crmt.second_step_loss`), over the per-modality logits of the
   training examples (computed once: nothing else changes).

-> the variables with the new a and a `crmt` collection holding L (what the evaluation's bound needs).
Differences from the released `get_lip` / `the_second_step`, all fixes: L is the gradient of each modality's own
logits o_m (the released code differentiates the fused logits, so its L already carries a factor a that the
bound multiplies in again, and it never clears the visual input's gradient between classes, so the visual L
sums over classes); BatchNorm is in eval mode (the released second step runs in train mode, its running
statistics moving while "W and phi are fixed"); it starts from the best-on-validation weights.
"""
import functools
import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax

from avjax import parallel
from avjax.data import pipeline
from avjax.defenses.crmt import second_step_loss

log = logging.getLogger(__name__)


def _per_example_norms(g):
    return jnp.sqrt(jnp.sum(jnp.square(g.reshape(g.shape[0], g.shape[1], -1)), -1))


def _gradient_norms(module, variables, image, audio):
    """-> (o_v (B, C), o_a (B, C), |d o_v,c / d image| (C, B), |d o_a,c / d audio| (C, B))."""
    classes = module.num_classes

    def logits_v(img):
        f_v = module.apply(variables, img, train=False, method="encode_visual")[0]
        return module.apply(variables, f_v, jnp.zeros((img.shape[0], f_v.shape[-1]), f_v.dtype),
                            method="classify")[1][:, :classes]

    def logits_a(aud):
        f_a = module.apply(variables, aud, train=False, method="encode_audio")
        return module.apply(variables, jnp.zeros((aud.shape[0], f_a.shape[-1]), f_a.dtype), f_a,
                            method="classify")[1][:, classes:]

    out = []
    for fn, x in ((logits_v, image), (logits_a, audio)):
        o, vjp = jax.vjp(fn, x)
        cotangents = jnp.eye(classes, dtype=o.dtype)[:, None, :] * jnp.ones_like(o)[None]   # (C, B, C)
        grads = jax.vmap(lambda ct: vjp(ct)[0])(cotangents)                                 # (C, B, ...)
        out.append((o, _per_example_norms(grads)))
    (o_v, n_v), (o_a, n_a) = out
    return o_v, o_a, n_v, n_a


def _split_batches(source, transform, *, batch_size, mesh, workers):
    """Yield (global batch, mask (B,) bool numpy, labels (B,) numpy) over one ordered pass of a split."""
    local_batch = parallel.check_batch_size(batch_size, mesh)
    batches = pipeline.exactly(pipeline.eval_dataset(source, transform, batch_size=local_batch, workers=workers),
                               pipeline.num_eval_batches(source, local_batch))
    for local in batches:
        batch = parallel.global_batch(local, mesh)
        yield (batch, np.asarray(jax.device_get(batch["mask"])).astype(bool),
               np.asarray(jax.device_get(batch["label"])))


def lipschitz_and_logits(module, variables, source, transform, *, batch_size, max_examples, mesh, workers):
    """-> (L (2, C) float32, o_v (N, C), o_a (N, C), labels (N,)) over the first `max_examples` (0: all) examples."""
    rep, dat = parallel.replicated(mesh), parallel.data_sharded(mesh)
    apply = jax.jit(functools.partial(_gradient_norms, module), in_shardings=(rep, dat, dat),
                    out_shardings=(rep, rep, rep, rep))
    variables = parallel.replicate(variables, mesh)
    lips = np.zeros((2, module.num_classes), np.float32)
    keep_v, keep_a, keep_y = [], [], []
    seen = 0
    for batch, mask, label in _split_batches(source, transform, batch_size=batch_size, mesh=mesh, workers=workers):
        o_v, o_a, n_v, n_a = (np.asarray(jax.device_get(x)) for x in apply(variables, batch["image"], batch["audio"]))
        if max_examples:
            mask &= np.cumsum(mask) + seen <= max_examples
        seen += int(mask.sum())
        if mask.any():
            lips[0] = np.maximum(lips[0], n_v[:, mask].max(1))
            lips[1] = np.maximum(lips[1], n_a[:, mask].max(1))
            keep_v.append(o_v[mask])
            keep_a.append(o_a[mask])
            keep_y.append(label[mask])
        if max_examples and seen >= max_examples:
            break
    return lips, np.concatenate(keep_v), np.concatenate(keep_a), np.concatenate(keep_y).astype(np.int32)


def train_scales(scales, bias, lipschitz, o_v, o_a, labels, *, epochs, batch_size, lr, momentum, weight_decay,
                 seed):
    """SGD on (a_v, a_a) alone (PyTorch-style weight decay, momentum) over shuffled minibatches of the frozen
    per-modality logits. -> the trained (a_v, a_a) as numpy arrays."""
    n = labels.shape[0]
    batch_size = min(batch_size, n)
    steps_per_epoch = n // batch_size
    order = np.concatenate([np.random.default_rng([seed, e]).permutation(n)[:steps_per_epoch * batch_size]
                            for e in range(epochs)]).reshape(-1, batch_size)
    tx = optax.chain(optax.add_decayed_weights(weight_decay), optax.sgd(lr, momentum=momentum))
    params, losses = _train_scales(tuple(jnp.asarray(a) for a in scales), jnp.asarray(bias), jnp.asarray(lipschitz),
                                   jnp.asarray(o_v), jnp.asarray(o_a), jnp.asarray(labels), jnp.asarray(order), tx)
    return tuple(np.asarray(p) for p in params), np.asarray(losses)


@functools.partial(jax.jit, static_argnums=(7,))
def _train_scales(scales, bias, lipschitz, o_v, o_a, labels, order, tx):
    def step(carry, idx):
        params, opt_state = carry
        loss, grads = jax.value_and_grad(second_step_loss, argnums=1)((o_v[idx], o_a[idx]), params, bias, lipschitz,
                                                                      labels[idx])
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    (params, _), losses = jax.lax.scan(step, (scales, tx.init(scales)), order)
    return params, losses


def mean_bound(scales, bias, lipschitz, o_v, o_a, labels) -> float:
    """The mean bound against the runner-up class: what the second step maximises."""
    return -float(second_step_loss((o_v, o_a), scales, bias, lipschitz, labels))


def accuracy(module, variables, source, transform, *, batch_size, mesh, workers) -> float:
    """Top-1 accuracy (fraction) of the model over a split."""
    rep, dat = parallel.replicated(mesh), parallel.data_sharded(mesh)
    predict = jax.jit(lambda v, i, a: jnp.argmax(module.apply(v, i, a, train=False)[0], -1),
                      in_shardings=(rep, dat, dat), out_shardings=rep)
    variables = parallel.replicate(variables, mesh)
    right = count = 0
    for batch, mask, label in _split_batches(source, transform, batch_size=batch_size, mesh=mesh, workers=workers):
        pred = np.asarray(jax.device_get(predict(variables, batch["image"], batch["audio"])))
        right += int((pred == label)[mask].sum())
        count += int(mask.sum())
    return right / max(count, 1)


def second_step(config, module, variables, sources, transforms, *, mesh) -> tuple[dict, dict]:
    """-> (variables with the trained a and the `crmt` collection, summary for train.json)."""
    cc, tc = config.crmt, config.train
    lips, o_v, o_a, labels = lipschitz_and_logits(
        module, variables, sources["train"], transforms["eval"], batch_size=cc.batch_size or tc.batch_size,
        max_examples=cc.lipschitz_examples, mesh=mesh, workers=config.data.workers)
    head = variables["params"]["classifier"]
    scales = (np.asarray(head["scale_visual"]), np.asarray(head["scale_audio"]))
    bias = np.asarray(head["bias"])
    epochs = cc.epochs or max(tc.num_epochs // 3 - 1, 1)
    before = mean_bound(scales, bias, lips, o_v, o_a, labels)
    trained, losses = train_scales(scales, bias, lips, o_v, o_a, labels, epochs=epochs,
                                   batch_size=cc.batch_size or tc.batch_size, lr=tc.lr.head * cc.lr_scale,
                                   momentum=cc.momentum, weight_decay=cc.weight_decay, seed=config.seed)
    after = mean_bound(trained, bias, lips, o_v, o_a, labels)
    log.info("CRMT second step: L visual %s, audio %s (max over %d training examples); mean bound on them %.4g -> "
             "%.4g after %d epochs on a", " ".join(f"{x:.3g}" for x in lips[0]), " ".join(f"{x:.3g}" for x in lips[1]),
             len(labels), before, after, epochs)
    params = dict(variables["params"])
    params["classifier"] = dict(head, scale_visual=trained[0], scale_audio=trained[1])
    out = dict(variables, params=params, crmt={"lipschitz": lips})
    summary = {"lipschitz_visual": lips[0].tolist(), "lipschitz_audio": lips[1].tolist(), "examples": len(labels),
               "epochs": epochs, "mean_bound_before": before, "mean_bound_after": after,
               "final_loss": float(losses[-1]) if len(losses) else None}
    return out, summary
