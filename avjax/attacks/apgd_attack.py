"""APGD (Croce & Hein, ICML 2020) on audio, vision or both, each modality with its own eps ball.

    adv_image, adv_audio = avjax.attacks.apgd(fns, image, audio, label, eps_visual=8/255, eps_audio=0.01)

Parameter-free PGD: the step starts at 2 eps (per modality: step_m = eta * eps_m with one eta per
example), momentum 0.75 after the first step, and at the checkpoints w_j (w_0 = 0, w_1 = 0.22 N,
w_{j+1} = w_j + max(w_j - w_{j-1} - 0.03 N, 0.06 N)) an example halves its eta and restarts from its best
point when (1) at most rho = 75 % of the steps since the last checkpoint increased its loss, or (2) its eta
was not halved at the last checkpoint and its best loss has not improved since. As the reference code
(github.com/fra31/auto-attack): a random start x + eps t / max|t| (t uniform), the gradient at the best
point is reused after a restart, and the returned point is the first misclassifying iterate an example reached
(else its highest-loss point). Restarts (and, for APGD-T, the target classes: the 2nd..(k+1)-th most
likely clean classes) run as a `lax.scan`; per example the first success is kept. Every example's attack
depends only on that example (no batch-global quantity).

Loops are `lax.scan` with a partial unroll (`unroll`), so compile time does not grow with `steps`.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from avjax.attacks.core import as_model_fns, forward_fn, frozen_features
from avjax.attacks.losses import LOSSES, per_example_loss
from avjax.attacks.model_fns import ModelFns
from avjax.attacks.threat import AUDIO_BOUNDS, ImageSpace


POINTS = ("first_success", "highest_loss")


@dataclasses.dataclass(frozen=True)
class APGDConfig:
    """Static description of one APGD call (hashable: part of the compiled program's key)."""

    steps: int
    restarts: int
    loss: str                 # 'ce' | 'dlr' | 'ce+cos'
    targeted: bool            # APGD-T: targeted DLR over `target_classes` runner-up classes
    target_classes: int
    rho: float                # checkpoint condition (1): fraction of loss increases
    momentum: float           # alpha of the momentum step
    initial_step: float       # eta at the start, in units of eps
    cos_weight: float
    attack_visual: bool
    attack_audio: bool
    space: ImageSpace
    unroll: int               # scan unroll of the step loop
    random_start: bool = True  # False: start at the clean input (deterministic; for debugging and tests)
    # which point an example returns: 'first_success' (AutoAttack's: the first iterate that misclassifies, else
    # the highest loss) or 'highest_loss' (the highest loss of every run, fooled or not: what a transfer attack
    # carries to another model, where the thin-margin first success would rarely fool it)
    point: str = "first_success"

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"unknown APGD loss {self.loss!r}; choose one of {LOSSES}")
        if self.targeted and self.loss != "dlr":
            raise ValueError("APGD-T uses the targeted DLR loss: loss='dlr'")
        if self.point not in POINTS:
            raise ValueError(f"APGD point must be one of {POINTS}, got {self.point!r}")
        if self.steps < 1 or self.restarts < 1 or self.target_classes < 1 or self.unroll < 1:
            raise ValueError("steps, restarts, target_classes and unroll must be >= 1")


def checkpoints(steps: int) -> np.ndarray:
    """(steps,) int: the length of the interval that ends at each iteration, 0 where none ends
    (the reference code's counter: first after 0.22 N, then shrinking by 0.03 N down to 0.06 N)."""
    interval = max(int(0.22 * steps), 1)
    shrink, smallest = max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    out = np.zeros(steps, np.int32)
    i = interval - 1
    while i < steps:
        out[i] = interval
        interval = max(interval - shrink, smallest)
        i += interval
    return out


def _per_example(mask, new, old):
    return jnp.where(mask.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)


def run_apgd(logits_fn, image, audio, label, eps_visual, eps_audio, cfg: APGDConfig, key):
    """The core (traceable): -> (adv_image, adv_audio). `key` seeds the random starts."""
    return apgd_search(logits_fn, image, audio, label, eps_visual, eps_audio, cfg, key)[:2]


def apgd_search(logits_fn, image, audio, label, eps_visual, eps_audio, cfg: APGDConfig, key):
    """-> (adv_image, adv_audio, reported (B,) bool): `reported`, where the attack's own forward passes found a
    misclassification and the point it returns is that success (never with point='highest_loss', which returns
    the highest-loss point instead), for a re-score by the full model."""
    fns = as_model_fns(logits_fn)
    space = cfg.space
    attack_v = cfg.attack_visual and (not isinstance(fns, ModelFns) or fns.uses_visual)
    attack_a = cfg.attack_audio and (not isinstance(fns, ModelFns) or fns.uses_audio)
    batch = label.shape[0]
    if not (attack_v or attack_a):
        return image, audio, jnp.zeros((batch,), bool)
    forward = forward_fn(fns, *frozen_features(fns, image, audio, attack_v, attack_a))
    eps_v = jnp.asarray(eps_visual, image.dtype)
    eps_a = jnp.asarray(eps_audio, audio.dtype)
    z0 = space.to_attack(image)

    def loss_and_grad(z, aud, target):
        """Per-example loss, (d/dz, d/daudio), and whether the model is fooled, at (z, aud)."""

        def total(z, aud):
            logits, out = forward(space.to_pixels(z), aud)   # z is kept inside the bounds by `project`
            losses = per_example_loss(cfg.loss, logits, out, label, target=target, cos_weight=cfg.cos_weight)
            return losses.sum(), (losses, logits)

        argnums = tuple(i for i, on in ((0, attack_v), (1, attack_a)) if on)
        (_, (losses, logits)), grads = jax.value_and_grad(total, argnums=argnums, has_aux=True)(z, aud)
        grads = dict(zip(argnums, grads))
        g_z, g_a = grads.get(0, jnp.zeros_like(z)), grads.get(1, jnp.zeros_like(aud))
        fooled = jnp.argmax(logits, -1) != label
        return losses, (g_z, g_a), fooled

    def project(z, aud):
        z = space.clamp(z0 + jnp.clip(z - z0, -eps_v, eps_v))[1] if attack_v else z0
        aud = jnp.clip(audio + jnp.clip(aud - audio, -eps_a, eps_a), *AUDIO_BOUNDS) if attack_a else audio
        return z, aud

    intervals = jnp.asarray(checkpoints(cfg.steps))
    highest = cfg.point == "highest_loss"

    def one_run(run_key, target):
        kv, ka = jax.random.split(run_key)
        # the reference start: x + eps * t / max|t|, t uniform in [-1, 1] (per example)
        tv = jax.random.uniform(kv, z0.shape, z0.dtype, -1.0, 1.0)
        ta = jax.random.uniform(ka, audio.shape, audio.dtype, -1.0, 1.0)
        unit = lambda t: t / jnp.max(jnp.abs(t), axis=tuple(range(1, t.ndim)), keepdims=True)  # noqa: E731
        start = float(cfg.random_start)
        x = project(z0 + start * eps_v * unit(tv), audio + start * eps_a * unit(ta))
        loss, grad, fooled = loss_and_grad(*x, target)
        eta = jnp.full((batch,), cfg.initial_step, image.dtype)
        state = dict(x=x, x_prev=x, grad=grad, loss=loss, best_x=x, best_grad=grad, best_loss=loss,
                     adv=x, fooled=fooled, eta=eta, increases=jnp.zeros((batch,), jnp.int32),
                     best_at_check=loss, halved_at_check=jnp.ones((batch,), bool))

        def step(s, xs):
            i, interval = xs
            alpha = jnp.where(i == 0, 1.0, cfg.momentum).astype(image.dtype)
            eta_b = lambda t: s["eta"].reshape((-1,) + (1,) * (t.ndim - 1))  # noqa: E731
            (z, aud), (z_prev, aud_prev) = s["x"], s["x_prev"]
            g_z, g_a = s["grad"]
            z1, a1 = project(z + eta_b(z) * eps_v * jnp.sign(g_z), aud + eta_b(aud) * eps_a * jnp.sign(g_a))
            new = project(z + alpha * (z1 - z) + (1 - alpha) * (z - z_prev),
                          aud + alpha * (a1 - aud) + (1 - alpha) * (aud - aud_prev))
            loss, grad, fooled = loss_and_grad(*new, target)
            newly = fooled & ~s["fooled"]
            adv = jax.tree.map(lambda n, o: _per_example(newly, n, o), new, s["adv"])
            better = loss > s["best_loss"]
            keep = lambda n, o: jax.tree.map(lambda a, b: _per_example(better, a, b), n, o)  # noqa: E731
            best_x, best_grad = keep(new, s["best_x"]), keep(grad, s["best_grad"])
            best_loss = jnp.where(better, loss, s["best_loss"])
            increases = s["increases"] + (loss > s["loss"]).astype(jnp.int32)
            # checkpoint: halve eta and go back to the best point where the search stalled
            at_check = interval > 0
            oscillating = increases <= (interval * cfg.rho)
            stalled = ~s["halved_at_check"] & (s["best_at_check"] >= best_loss)
            halve = at_check & (oscillating | stalled)
            x_next = jax.tree.map(lambda b, n: _per_example(halve, b, n), best_x, new)
            grad_next = jax.tree.map(lambda b, n: _per_example(halve, b, n), best_grad, grad)
            # the momentum of the next step is x_{k+1} - x_k, from the point this step started at
            s = dict(x=x_next, x_prev=s["x"], grad=grad_next, loss=loss, best_x=best_x, best_grad=best_grad,
                     best_loss=best_loss, adv=adv, fooled=s["fooled"] | fooled,
                     eta=jnp.where(halve, s["eta"] / 2, s["eta"]),
                     increases=jnp.where(at_check, 0, increases),
                     best_at_check=jnp.where(at_check, best_loss, s["best_at_check"]),
                     halved_at_check=jnp.where(at_check, halve, s["halved_at_check"]))
            return s, None

        s, _ = jax.lax.scan(step, state, (jnp.arange(cfg.steps), intervals), unroll=cfg.unroll)
        if highest:
            return s["best_x"], s["fooled"], s["best_loss"]
        out = jax.tree.map(lambda a, b: _per_example(s["fooled"], a, b), s["adv"], s["best_x"])
        return out, s["fooled"], s["best_loss"]

    if cfg.targeted:  # the 2nd .. (k+1)-th most likely clean classes, one run each (x restarts)
        logits = forward(image, audio)[0]
        n_targets = min(cfg.target_classes, logits.shape[-1] - 1)
        targets = jnp.argsort(logits, -1)[:, ::-1][:, 1:n_targets + 1].T            # (n_targets, B)
        targets = jnp.repeat(targets, cfg.restarts, axis=0)
    else:
        targets = jnp.zeros((cfg.restarts, batch), label.dtype)
    keys = jax.random.split(key, targets.shape[0])   # a fresh random start for every run (target x restart)

    def body(carry, xs):
        """One run (restart / target); per example the first success is kept, else the highest loss (with
        point='highest_loss': the highest loss of all runs)."""
        run_key, target = xs
        (bz, ba), done, bl = carry
        (z, a), f, l = one_run(run_key, target if cfg.targeted else None)
        take = (l > bl) if highest else ~done & (f | (l > bl))
        return ((_per_example(take, z, bz), _per_example(take, a, ba)), done | f, jnp.where(take, l, bl)), None

    init = ((z0, audio), jnp.zeros((batch,), bool), jnp.full((batch,), -jnp.inf, image.dtype))
    ((best_z, best_a), reported, _), _ = jax.lax.scan(body, init, (keys, targets))
    adv_v = space.clamp(best_z)[0] if attack_v else image
    return adv_v, (best_a if attack_a else audio), reported & (not highest)
