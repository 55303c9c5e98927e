"""FAB (Croce & Hein, ICML 2020), L-inf, untargeted or targeted (FAB-T): the minimal adversarial perturbation, on
audio, vision or both.

Two modalities with their own eps are one L-inf problem in scaled coordinates u = (x - x0) / eps per modality
(the frame in the attack space of its units): the threat model's ball is ||u||_inf <= 1, and FAB minimises
||u||_inf. Each step linearises the model at u_k, takes the class boundary j != y closest in L-inf
(|f_j - f_y| / ||grad (f_j - f_y)||_1), and projects both u_k and the original point 0 onto that linear
boundary within the box of valid inputs (the L-inf projection, from either side of the plane as the reference's:
the smallest r such that moving every coordinate by r towards the boundary, clipped to the box, reaches it; found
by bisection, per example). The
step is the FAB mixture u_{k+1} = (1 - a) (u_k + eta d_k) + a eta d_0 with a = min(|d_k| / (|d_k| + |d_0|),
alpha_max) (eta = 1.05 overshoots the boundary), and after reaching an adversarial point it steps back
towards the original, u <- beta u (beta = 0.9), so the search walks along the boundary towards x0.
Per example the smallest adversarial u found is kept; the attack returns it when it lies inside the eps ball
(||u||_inf <= 1), else the clean input (a fixed-budget evaluation). Restarts start from a random point of the
ball (`restarts`); loops are `lax.scan` (partial `unroll`). Every example's attack depends only on it.

FAB-T (`targeted`, AutoAttack's version) runs the search once per target class t among the `target_classes`
classes the clean model ranks highest after the true one, always towards the one boundary f_t - f_y = 0: one
gradient a step instead of one per class (K), so its cost does not grow with the number of classes. Success is
still any misclassification, and the smallest adversarial point over all targets and restarts is kept.
"""
import dataclasses

import jax
import jax.numpy as jnp

from avjax.attacks.core import as_model_fns, forward_fn, frozen_features
from avjax.attacks.model_fns import ModelFns
from avjax.attacks.threat import AUDIO_BOUNDS, ImageSpace

BISECTION_STEPS = 30


@dataclasses.dataclass(frozen=True)
class FABConfig:
    """Static description of one FAB call (hashable)."""

    steps: int = 100
    restarts: int = 1
    eta: float = 1.05          # overshoot past the linearised boundary
    beta: float = 0.9          # backward step towards the original after a success
    alpha_max: float = 0.1     # largest weight of the original point in the step
    attack_visual: bool = True
    attack_audio: bool = True
    space: ImageSpace = ImageSpace()
    unroll: int = 1
    targeted: bool = False     # FAB-T: towards each of the top `target_classes` runner-up classes in turn
    target_classes: int = 9

    def __post_init__(self):
        if self.steps < 1 or self.restarts < 1 or self.unroll < 1 or self.target_classes < 1:
            raise ValueError("steps, restarts, unroll and target_classes must be >= 1")


def linf_projection(w, c, lo, hi):
    """The smallest L-inf step d (B, n) onto the plane c + w.d = 0 inside the box lo <= d <= hi (lo <= 0 <= hi),
    from either side of it, as AutoAttack's `projection_linf` (a point past the boundary is projected back onto it,
    which is how FAB walks along the boundary after a success).

    With the signs flipped so that c <= 0, moving every coordinate by r in the direction of sign(w), clipped to
    the box, raises c + w.d monotonically in r: bisection finds the smallest r that reaches 0 (where even the
    box's corner does not, the corner is the best there is). Examples on the plane (c = 0) need no step."""
    side = jnp.where(c > 0, -1.0, 1.0).astype(w.dtype)
    w, c = w * side[:, None], c * side

    def step_of(r):
        return jnp.clip(jnp.sign(w) * r[:, None], lo, hi)

    r_max = jnp.max(jnp.maximum(-lo, hi), -1)
    reach = lambda r: c + jnp.sum(w * step_of(r), -1)  # noqa: E731

    def bisect(_, bounds):
        low, high = bounds
        mid = 0.5 * (low + high)
        ok = reach(mid) >= 0
        return jnp.where(ok, low, mid), jnp.where(ok, mid, high)

    _, r = jax.lax.fori_loop(0, BISECTION_STEPS, bisect, (jnp.zeros_like(r_max), r_max))
    return jnp.where((c >= 0)[:, None], 0.0, step_of(r))


def run_fab(logits_fn, image, audio, label, eps_visual, eps_audio, cfg: FABConfig, key):
    """The core (traceable): -> (adv_image, adv_audio), the smallest adversarial point found if it lies in
    the eps balls, else the clean input."""
    return fab_search(logits_fn, image, audio, label, eps_visual, eps_audio, cfg, key)[:2]


def fab_search(logits_fn, image, audio, label, eps_visual, eps_audio, cfg: FABConfig, key):
    """-> (adv_image, adv_audio, radius (B,)): as `run_fab`, plus per example the smallest ||u||_inf of an
    adversarial point found (in units of each modality's eps; inf where none): FAB's estimate of the
    example's robustness radius."""
    fns = as_model_fns(logits_fn)
    space = cfg.space
    attack_v = cfg.attack_visual and (not isinstance(fns, ModelFns) or fns.uses_visual)
    attack_a = cfg.attack_audio and (not isinstance(fns, ModelFns) or fns.uses_audio)
    if not (attack_v or attack_a):
        return image, audio, jnp.full(label.shape, jnp.inf, image.dtype)
    forward = forward_fn(fns, *frozen_features(fns, image, audio, attack_v, attack_a))
    eps_v = jnp.asarray(eps_visual, image.dtype)
    eps_a = jnp.asarray(eps_audio, audio.dtype)
    z0 = space.to_attack(image)
    batch = label.shape[0]
    n_v = z0[0].size if attack_v else 0

    def split(u):
        z = z0 + eps_v * u[:, :n_v].reshape(z0.shape) if attack_v else z0
        a = audio + eps_a * u[:, n_v:].reshape(audio.shape) if attack_a else audio
        return z, a

    def logits_at(u):
        z, a = split(u)
        return forward(space.to_pixels(z), a)[0]

    # the box of valid inputs in u (pixels in [0, 1], audio in [-1, 1])
    lo_z, hi_z = space.to_attack(jnp.zeros_like(image)), space.to_attack(jnp.ones_like(image))
    parts_lo, parts_hi = [], []
    if attack_v:
        parts_lo.append(((lo_z - z0) / eps_v).reshape(batch, -1))
        parts_hi.append(((hi_z - z0) / eps_v).reshape(batch, -1))
    if attack_a:
        parts_lo.append(((AUDIO_BOUNDS[0] - audio) / eps_a).reshape(batch, -1))
        parts_hi.append(((AUDIO_BOUNDS[1] - audio) / eps_a).reshape(batch, -1))
    lo, hi = jnp.concatenate(parts_lo, -1), jnp.concatenate(parts_hi, -1)
    n = lo.shape[-1]
    num_classes = logits_at(jnp.zeros((batch, n), image.dtype)).shape[-1]
    one_hot_y = jax.nn.one_hot(label, num_classes, dtype=image.dtype)

    def boundary(u, target):
        """(w, b) of the linearised boundary f_j - f_y = 0 at u: j = target (FAB-T), else the closest j != y."""
        logits, vjp = jax.vjp(logits_at, u)
        if cfg.targeted:
            direction = jax.nn.one_hot(target, num_classes, dtype=logits.dtype) - one_hot_y
            return vjp(direction)[0], jnp.sum(logits * direction, -1)
        cotangents = jnp.eye(num_classes, dtype=logits.dtype)[:, None, :] * jnp.ones((1, batch, 1), logits.dtype)
        grads = jax.vmap(lambda ct: vjp(ct)[0])(cotangents)                  # (K, B, n): d f_k / d u
        grad_y = jnp.einsum("kbn,bk->bn", grads, one_hot_y)
        w = jnp.moveaxis(grads, 0, 1) - grad_y[:, None, :]                    # (B, K, n)
        b = logits - jnp.sum(logits * one_hot_y, -1, keepdims=True)           # (B, K): f_j - f_y
        distance = jnp.abs(b) / (jnp.sum(jnp.abs(w), -1) + 1e-12)
        distance = jnp.where(one_hot_y > 0, jnp.inf, distance)
        j = jnp.argmin(distance, -1)
        pick = lambda t: jnp.take_along_axis(t, j.reshape((-1,) + (1,) * (t.ndim - 1)), 1)[:, 0]  # noqa: E731
        return pick(w), pick(b)

    def norm(u):
        return jnp.max(jnp.abs(u), -1)

    def one_run(start, target):
        best = jnp.zeros((batch, n), image.dtype)
        best_norm = jnp.full((batch,), jnp.inf, image.dtype)

        def step(carry, _):
            u, best, best_norm = carry
            w, b = boundary(u, target)
            d_k = linf_projection(w, b, lo - u, hi - u)                       # from the current point
            d_0 = linf_projection(w, b - jnp.sum(w * u, -1), lo, hi)          # from the original, same plane
            nk, n0 = norm(d_k), norm(d_0)
            alpha = jnp.minimum(nk / (nk + n0 + 1e-12), cfg.alpha_max)[:, None]
            u_new = jnp.clip((1 - alpha) * (u + cfg.eta * d_k) + alpha * cfg.eta * d_0, lo, hi)
            fooled = jnp.argmax(logits_at(u_new), -1) != label
            better = fooled & (norm(u_new) < best_norm)
            best = jnp.where(better[:, None], u_new, best)
            best_norm = jnp.where(better, norm(u_new), best_norm)
            u_next = jnp.where(fooled[:, None], cfg.beta * u_new, u_new)      # back towards the original
            return (u_next, best, best_norm), None

        (_, best, best_norm), _ = jax.lax.scan(step, (start, best, best_norm), None, length=cfg.steps,
                                               unroll=cfg.unroll)
        return best, best_norm

    starts = [jnp.zeros((batch, n), image.dtype)]
    for k in jax.random.split(key, cfg.restarts)[1:]:  # later restarts: random points of the ball
        starts.append(jnp.clip(jax.random.uniform(k, (batch, n), image.dtype, -1.0, 1.0), lo, hi))
    if cfg.targeted:   # the runner-up classes of the clean input, most likely first: (T, B)
        clean_logits = jnp.where(one_hot_y > 0, -jnp.inf, logits_at(starts[0]))
        targets = jnp.argsort(-clean_logits, -1)[:, :min(cfg.target_classes, num_classes - 1)].T
    else:
        targets = jnp.zeros((1, batch), jnp.int32)  # unused: the closest boundary is chosen every step
    runs_start = jnp.tile(jnp.stack(starts), (targets.shape[0], 1, 1))   # every restart for every target
    runs_target = jnp.repeat(targets, len(starts), axis=0)

    def body(carry, run):
        u, un = one_run(*run)
        take = un < carry[1]
        return (jnp.where(take[:, None], u, carry[0]), jnp.minimum(un, carry[1])), None

    initial = (jnp.zeros((batch, n), image.dtype), jnp.full((batch,), jnp.inf, image.dtype))
    (best, best_norm), _ = jax.lax.scan(body, initial, (runs_start, runs_target))
    inside = best_norm <= 1.0
    u = jnp.where(inside[:, None], jnp.clip(best, -1.0, 1.0), 0.0)
    z, a = split(u)
    adv_v = space.clamp(z)[0] if attack_v else image
    adv_a = jnp.clip(a, *AUDIO_BOUNDS) if attack_a else audio
    return adv_v, adv_a, best_norm
