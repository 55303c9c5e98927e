"""CRMT, Certifiable Robust Multi-modal Training (Yang et al., ICLR 2024): the math of its head, its margin
regulariser, its second step and its bound, as pure functions.

The head (`avjax.models.crmt_head.CRMTHead`) gives each modality m its own logits o_m = W_m f_m, where every row of
W_m is centred and scaled to unit L2 norm (the released `OWNNorm` with one group per class reduces to exactly this:
its "orthogonalisation" of a 1 x d group is a division by the row's norm), and fuses them with a learned weight
per class and modality: h = a_v * o_v + a_a * o_a + b.

Step 1 trains everything on cross-entropy plus rho times the margin regulariser (`margin_regulariser`). Step 2
freezes the encoders and W, estimates per modality and class L[m, c] = max over training examples of
|d o_m,c / d x_m|_2, and trains only a to maximise the bound (`bound`):

    r(x) = (sum_m (a_m,y o_m,y - a_m,k o_m,k) + b_y - b_k) / sqrt(sum_m (s_m (|a_m,y| L_m,y + |a_m,k| L_m,k))^2),

k the runner-up class of h (the released code writes a for |a|: the same while a >= 0, which its training does not
enforce). With true Lipschitz constants L, r bounds the smallest perturbation that
changes h's margin over k, in the whitened L2 norm sqrt(sum_m |d_m|^2 / s_m^2) (s = 1: the plain joint L2 norm the
paper states; s_m = 0 leaves that modality out: the bound for perturbing the other one alone). L estimated as a
maximum over training examples is a lower estimate of the true constant, and k is only the runner-up class, so r is
not a certificate: `avjax.evaluation.certified` measures how often L2 PGD breaks an example inside it.
"""
import jax
import jax.numpy as jnp


def row_normalise(w):
    """Each row of w (classes, d) centred and scaled to unit L2 norm (the released OWNNorm, one group per class)."""
    centred = w - jnp.mean(w, axis=-1, keepdims=True)
    return centred / jnp.linalg.norm(centred, axis=-1, keepdims=True)


def margin_regulariser(modality_logits, label, eps=1e-5):
    """mean_b log(sum_m sum_{k != y} exp(o_m,k - o_m,y) + eps): the released code's margin term (per example,
    computed in log space; equal to log(sum_m (sum_k exp(o_m,k) exp(-o_m,y) - 1) + eps))."""
    terms = []
    for o in modality_logits:
        o = o.astype(jnp.float32)
        own = jnp.take_along_axis(o, label[:, None], axis=-1)
        others = jnp.where(jax.nn.one_hot(label, o.shape[-1], dtype=bool), -jnp.inf, o - own)
        terms.append(others)
    lse = jax.nn.logsumexp(jnp.concatenate(terms, axis=-1), axis=-1)
    return jnp.logaddexp(lse, jnp.log(eps))


def runner_up(logits, label):
    """The highest-scoring class other than the label (the released second step's `second_largest_ids`)."""
    return jnp.argmax(jnp.where(jax.nn.one_hot(label, logits.shape[-1], dtype=bool), -jnp.inf, logits), axis=-1)


def bound(modality_logits, scales, bias, lipschitz, label, other, weights=(1.0, 1.0)):
    """(B,) CRMT's bound r against class `other` (see the module docstring), in the whitened L2 norm of `weights`
    (s_visual, s_audio); `modality_logits` = (o_v, o_a), `scales` = (a_v, a_a), `lipschitz` (2, classes)."""
    rows = jnp.arange(label.shape[0])
    numerator = bias[label] - bias[other]
    squares = 0.0
    for m, (o, a) in enumerate(zip(modality_logits, scales)):
        numerator = numerator + a[label] * o[rows, label] - a[other] * o[rows, other]
        spread = jnp.abs(a[label]) * lipschitz[m, label] + jnp.abs(a[other]) * lipschitz[m, other]
        squares = squares + jnp.square(weights[m] * spread)
    return numerator / jnp.sqrt(squares)


def second_step_loss(modality_logits, scales, bias, lipschitz, label):
    """-mean_b r(x_b), r against the runner-up class of the fused logits (the released `the_second_step`)."""
    logits = bias + sum(a * o for a, o in zip(scales, modality_logits))
    return -jnp.mean(bound(modality_logits, scales, bias, lipschitz, label, runner_up(logits, label)))
