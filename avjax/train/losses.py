"""Training objectives: cross-entropy plus the defenses that are loss terms (MinSim, MaxSim, PCL).

MinSim (the released code): L = CE + w * mean_b cos(f_v^b, f_a^b)  ("multimodal dispersion").
MaxSim (its sign-flipped baseline): L = CE - w * mean_b cos(f_v^b, f_a^b).
PCL (Mustafa et al. 2019, the official code's form, docs/method.md, "Defenses") on the fused feature f:
    L = CE + w_prox * mean_b ||f_b - c_{y_b}||^2 - w_conprox * mean_{b, j != y_b} ||f_b - c'_j||^2
with two learnable centre sets c (proximity) and c' (contrastive proximity).
CRMT (Yang et al. 2024, its released CRMT_JT; avjax.defenses.crmt), on a model with the CRMT head, whose `fused` is
the per-modality logits [o_v; o_a]:  L = CE + rho * mean_b log(sum_m sum_{k != y} exp(o_m,k - o_m,y) + 1e-5).

The localization model's audio-visual contrast (beyond the paper, `localization_contrast`): frame i and sound j
score S_ij = max over the map's locations of cos(f_a^j, f_v^i[h, w]); a cross-entropy over the batch's sounds
(and over its frames) pulls each frame's best location towards the sounds of its class and away from the
others', so the location that matches the sound is the object that makes it.
"""
import jax
import jax.numpy as jnp
import optax

from avjax.common import cosine_similarity
from avjax.defenses.crmt import margin_regulariser

DEFENSES = ("none", "minsim", "maxsim", "pcl", "crmt")


def masked_mean(x, mask):
    return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def pcl_terms(fused, label, centres, con_centres):
    """-> (proximity, contrastive proximity) per example (official-code squared distances)."""
    d_prox = jnp.sum(jnp.square(fused - centres[label]), axis=-1)
    d_all = jnp.sum(jnp.square(fused[:, None, :] - con_centres[None, :, :]), axis=-1)  # (B, C)
    num_classes = con_centres.shape[0]
    others = 1.0 - jnp.eye(num_classes, dtype=fused.dtype)[label]
    d_con = jnp.sum(d_all * others, axis=-1) / (num_classes - 1)
    return d_prox, d_con


def _unit(x):
    return x / (jnp.linalg.norm(x, axis=-1, keepdims=True) + 1e-6)


def localization_contrast(visual_map, f_a, label, temperature, mask, false_negative_cos=1.0):
    """Supervised audio-visual contrast over the batch (every pair of one class is positive): the mean of the
    frame-to-sounds and sound-to-frames cross-entropies of S / temperature, S_ij = max_hw cos(f_a^j, f_v^i[h, w]).

    A pair of another class whose frames look alike (cosine of the pooled visual features) or whose sounds sound
    alike (cosine of the audio features) above `false_negative_cos` is left out of the negatives: the map cannot
    tell such a frame's object from the positive's, and asking it to would pull the peak off the object."""
    v = _unit(visual_map)
    a = _unit(f_a)
    scores = jnp.max(jnp.einsum("ihwd,jd->ijhw", v, a), axis=(2, 3)) / temperature  # (frames, sounds)
    valid = mask[:, None] * mask[None, :]
    same = label[:, None] == label[None, :]
    positive = same.astype(scores.dtype) * valid
    if false_negative_cos < 1.0:
        pooled, sound = jax.lax.stop_gradient(_unit(visual_map.mean(axis=(1, 2)))), jax.lax.stop_gradient(a)
        alike = (pooled @ pooled.T > false_negative_cos) | (sound @ sound.T > false_negative_cos)
        valid = valid * (same | ~alike).astype(scores.dtype)
    logits = jnp.where(valid > 0, scores, -1e9)

    def multi_positive_ce(lg, pos):  # -log of the softmax mass on the positives, per row
        return -(jax.nn.logsumexp(jnp.where(pos > 0, lg, -1e9), axis=-1) - jax.nn.logsumexp(lg, axis=-1))

    per_example = 0.5 * (multi_positive_ce(logits, positive) + multi_positive_ce(logits.T, positive.T))
    return masked_mean(per_example, mask)


def objective(logits, out, label, defense_cfg, pcl_params=None, mask=None, contrast_cfg=None):
    """-> (total loss, metrics dict). `defense_cfg` has `name` and `weight` (+ PCL weights); `contrast_cfg`
    (config.train.contrast: `weight`, `temperature`) adds the localization model's audio-visual contrast."""
    mask = jnp.ones(label.shape, logits.dtype) if mask is None else mask
    ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), label)
    metrics = {"ce": masked_mean(ce, mask),
               "accuracy": masked_mean((jnp.argmax(logits, -1) == label).astype(jnp.float32), mask)}
    total = metrics["ce"]
    name = defense_cfg["name"]
    if "visual" in out and "audio" in out:
        cos = cosine_similarity(out["visual"].astype(jnp.float32), out["audio"].astype(jnp.float32))
        metrics["cos"] = masked_mean(cos, mask)
    if name in ("minsim", "maxsim"):
        if "cos" not in metrics:
            raise ValueError(f"defense {name!r} needs an audio-visual model")
        sign = 1.0 if name == "minsim" else -1.0
        total = total + sign * defense_cfg["weight"] * metrics["cos"]
    elif name == "pcl":
        prox, con = pcl_terms(out["fused"].astype(jnp.float32), label, pcl_params["centres"],
                              pcl_params["con_centres"])
        metrics["pcl_prox"], metrics["pcl_con"] = masked_mean(prox, mask), masked_mean(con, mask)
        total = total + defense_cfg["prox_weight"] * metrics["pcl_prox"] \
            - defense_cfg["con_weight"] * metrics["pcl_con"]
    elif name == "crmt":
        classes = logits.shape[-1]
        if out["fused"].shape[-1] != 2 * classes:
            raise ValueError("defense 'crmt' needs the CRMT head (model.head = 'crmt')")
        o = out["fused"].astype(jnp.float32)
        metrics["crmt_margin"] = masked_mean(margin_regulariser((o[:, :classes], o[:, classes:]), label), mask)
        total = total + defense_cfg["rho"] * metrics["crmt_margin"]
    elif name != "none":
        raise ValueError(f"unknown defense {name!r}; choose one of {DEFENSES}")
    if contrast_cfg is not None and contrast_cfg["weight"]:
        if "visual_map" not in out:
            raise ValueError("train.contrast needs the localization model (model.architecture='localization')")
        metrics["contrast"] = localization_contrast(out["visual_map"].astype(jnp.float32),
                                                    out["audio"].astype(jnp.float32), label,
                                                    contrast_cfg["temperature"], mask,
                                                    contrast_cfg.get("false_negative_cos", 1.0))
        total = total + contrast_cfg["weight"] * metrics["contrast"]
    metrics["loss"] = total
    return total, metrics
