"""Per-example attacker losses on logits (to be maximised), shared by APGD and Square.

* `ce`: cross entropy of the true class.
* `dlr`: Croce & Hein's Difference of Logits Ratio, -(z_y - max_{i!=y} z_i) / (z_pi1 - z_pi3), invariant
  to shifts and rescalings of the logits (so a defense cannot hide behind a logit scale).
* targeted DLR: -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2) towards class t.
* `margin`: max_{i!=y} z_i - z_y, > 0 exactly when the example is misclassified (Square's loss).
* `ce+cos`: CE plus w * cos(f_v, f_a), the released defense evaluation's attacker.
"""
import jax
import jax.numpy as jnp
import optax

from avjax.common import cosine_similarity

LOSSES = ("ce", "dlr", "ce+cos")
DLR_EPS = 1e-12


def margin(logits, label):
    """max_{i != y} z_i - z_y per example (> 0: misclassified)."""
    true = jnp.take_along_axis(logits, label[:, None], -1)[:, 0]
    others = jnp.where(jax.nn.one_hot(label, logits.shape[-1], dtype=bool), -jnp.inf, logits)
    return others.max(-1) - true


def dlr(logits, label):
    """Untargeted DLR (needs >= 3 classes)."""
    _check_classes(logits, 3, "DLR")
    top = jnp.sort(logits, -1)[:, ::-1]
    return margin(logits, label) / (top[:, 0] - top[:, 2] + DLR_EPS)


def dlr_targeted(logits, label, target):
    """Targeted DLR towards `target` (needs >= 4 classes)."""
    _check_classes(logits, 4, "targeted DLR")
    top = jnp.sort(logits, -1)[:, ::-1]
    true = jnp.take_along_axis(logits, label[:, None], -1)[:, 0]
    tgt = jnp.take_along_axis(logits, target[:, None], -1)[:, 0]
    return -(true - tgt) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + DLR_EPS)


def per_example_loss(name, logits, out, label, *, target=None, cos_weight=1.0):
    """The attacker's loss per example (B,), to be maximised."""
    if name == "ce":
        return optax.softmax_cross_entropy_with_integer_labels(logits, label)
    if name == "dlr":
        return dlr(logits, label) if target is None else dlr_targeted(logits, label, target)
    if name == "ce+cos":
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, label)
        if "visual" in out and "audio" in out:  # only where both features exist
            ce = ce + cos_weight * cosine_similarity(out["visual"], out["audio"])
        return ce
    raise ValueError(f"unknown attacker loss {name!r}; choose one of {LOSSES}")


def _check_classes(logits, need, what):
    if logits.shape[-1] < need:
        raise ValueError(f"{what} needs at least {need} classes; this model has {logits.shape[-1]}")
