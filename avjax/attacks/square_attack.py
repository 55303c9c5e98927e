"""Square attack (Andriushchenko et al., ECCV 2020), L-inf, score-based: no gradient is ever taken.

    (adv_image, adv_audio), queries = avjax.attacks.square(fns, image, audio, label, eps_visual=8/255,
                                                           eps_audio=0.01, queries=5000, key=key)

It starts from vertical stripes of +-eps on the frame (one sign per column and channel) and +-eps per
sample on the waveform, then, one query per iteration, redraws the perturbation inside one random
window of each attacked modality (a square of side s on the frame, +-eps per channel; a segment of the
waveform, a +-eps square wave of random period and phase: `square_wave`) and keeps the change where it lowered
the example's margin loss
max_{i!=y} z_i - z_y. Window sizes follow the reference schedule: a fraction p of the frame's pixels (of
the waveform's samples), p_init halved at 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000 of 10000
iterations (rescaled to the budget). Each example stops as soon as it is misclassified and never spends
more than `queries` model evaluations (the first is the initial point): the loop has a fixed shape
(`lax.while_loop` over iterations, a mask per example) and ends when every example has stopped. Unlike the
reference code, a redrawn window is not re-sampled when it equals the current one (a wasted query at
worst), and with both modalities attacked one query tries a window in each.
Results are reproducible from `key`; an example's search does not depend on its batch-mates'.
"""
import dataclasses

import jax
import jax.numpy as jnp

from avjax.attacks.core import as_model_fns, forward_fn, frozen_features
from avjax.attacks.losses import margin
from avjax.attacks.model_fns import ModelFns
from avjax.attacks.threat import AUDIO_BOUNDS, ImageSpace

SCHEDULE = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)  # of 10000 iterations: p halves


@dataclasses.dataclass(frozen=True)
class SquareConfig:
    queries: int          # model evaluations per example at most (>= 1)
    p_init: float         # initial fraction of a modality changed per iteration
    attack_visual: bool
    attack_audio: bool
    space: ImageSpace

    def __post_init__(self):
        if self.queries < 1 or not 0 < self.p_init <= 1:
            raise ValueError("square: queries must be >= 1 and p_init in (0, 1]")


def window_fraction(p_init, iteration, iterations):
    """The reference p schedule at `iteration` of `iterations` (traceable)."""
    it = (iteration * 10000) // jnp.maximum(iterations, 1)
    halvings = sum((it > t).astype(jnp.int32) for t in SCHEDULE)
    return p_init / (2.0 ** halvings)


def square_wave(key, pos, octaves: int, dtype):
    """(B, L) values in {-1, +1}: per example a square wave of half period 2^j samples (j uniform in 0..`octaves`),
    random phase and sign, read at positions `pos` (B, L). A waveform window of one sign is a DC step, which a
    waveform net (convolutions and BatchNorm, high-pass) barely hears; a square wave of random frequency spans
    every octave and keeps every sample at a vertex of the L-inf ball, as Square's windows do."""
    k_half, k_phase, k_sign = jax.random.split(key, 3)
    batch = pos.shape[0]
    half = jnp.left_shift(1, jax.random.randint(k_half, (batch, 1), 0, octaves + 1))
    phase = jax.random.randint(k_phase, (batch, 1), 0, 2 ** octaves)
    sign = jax.random.choice(k_sign, jnp.array([-1.0, 1.0], dtype), (batch, 1))
    return sign * (1.0 - 2.0 * (((pos + phase) // half) % 2)).astype(dtype)


def run_square(logits_fn, image, audio, label, eps_visual, eps_audio, cfg: SquareConfig, key):
    """The core (traceable): -> ((adv_image, adv_audio), queries used per example (B,) int32)."""
    return square_search(logits_fn, image, audio, label, eps_visual, eps_audio, cfg, key)[:2]


def square_search(logits_fn, image, audio, label, eps_visual, eps_audio, cfg: SquareConfig, key):
    """-> ((adv_image, adv_audio), queries (B,), reported (B,) bool): `reported` where the attack's own margin says
    misclassified (<= 0, ties included), for a re-score by the full model."""
    fns = as_model_fns(logits_fn)
    space = cfg.space
    attack_v = cfg.attack_visual and (not isinstance(fns, ModelFns) or fns.uses_visual)
    attack_a = cfg.attack_audio and (not isinstance(fns, ModelFns) or fns.uses_audio)
    batch = label.shape[0]
    if not (attack_v or attack_a):
        return (image, audio), jnp.zeros((batch,), jnp.int32), jnp.zeros((batch,), bool)
    forward = forward_fn(fns, *frozen_features(fns, image, audio, attack_v, attack_a))
    eps_v = jnp.asarray(eps_visual, image.dtype)
    eps_a = jnp.asarray(eps_audio, audio.dtype)
    z0 = space.to_attack(image)
    _, height, width, channels = image.shape
    length = audio.shape[-1]
    iterations = cfg.queries - 1
    octaves = max(int(length).bit_length() - 1, 0)   # half periods 1, 2, 4, ... <= length samples

    def candidate(delta_v, delta_a):
        pix, z = space.clamp(z0 + delta_v) if attack_v else (image, z0)
        aud = jnp.clip(audio + delta_a, *AUDIO_BOUNDS) if attack_a else audio
        return pix, z - z0, aud, aud - audio

    def loss(pix, aud):
        """z_y - max_{i!=y} z_i: minimised; <= 0 once the example is misclassified."""
        return -margin(forward(pix, aud)[0], label)

    def per_example(mask, new, old):
        return jnp.where(mask.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)

    k_init, k_loop = jax.random.split(key)
    kv, ka = jax.random.split(k_init)
    stripes = jax.random.choice(kv, jnp.array([-1.0, 1.0], image.dtype), (batch, 1, width, channels))
    signs_a = jax.random.choice(ka, jnp.array([-1.0, 1.0], audio.dtype), (batch, length))
    pix, delta_v, aud, delta_a = candidate(jnp.broadcast_to(eps_v * stripes, z0.shape), eps_a * signs_a)
    best = loss(pix, aud)
    queries = jnp.ones((batch,), jnp.int32)

    def cond(carry):
        i, _, _, best, queries, _ = carry
        return (i < iterations) & jnp.any((best > 0) & (queries < cfg.queries))

    def body(carry):
        i, delta_v, delta_a, best, queries, k = carry
        k, k_pos_v, k_val_v, k_pos_a, k_val_a = jax.random.split(k, 5)
        p = window_fraction(cfg.p_init, i, iterations)
        new_v, new_a = delta_v, delta_a
        if attack_v:
            max_side = max(min(height, width) - 1, 1)
            side = jnp.clip(jnp.round(jnp.sqrt(p * height * width)).astype(jnp.int32), 1, max_side)
            r = jax.random.randint(k_pos_v, (batch,), 0, height - side + 1)
            c = jax.random.randint(jax.random.fold_in(k_pos_v, 1), (batch,), 0, width - side + 1)
            rows, cols = jnp.arange(height), jnp.arange(width)
            inside = (((rows[None] >= r[:, None]) & (rows[None] < (r + side)[:, None]))[:, :, None]
                      & ((cols[None] >= c[:, None]) & (cols[None] < (c + side)[:, None]))[:, None, :])
            values = eps_v * jax.random.choice(k_val_v, jnp.array([-1.0, 1.0], image.dtype), (batch, 1, 1, channels))
            new_v = jnp.where(inside[..., None], values, delta_v)
        if attack_a:
            seg = jnp.clip(jnp.round(p * length).astype(jnp.int32), 1, max(length - 1, 1))
            start = jax.random.randint(k_pos_a, (batch,), 0, length - seg + 1)
            pos = jnp.arange(length)[None]
            inside = (pos >= start[:, None]) & (pos < (start + seg)[:, None])
            new_a = jnp.where(inside, eps_a * square_wave(k_val_a, pos - start[:, None], octaves, audio.dtype),
                              delta_a)
        pix, new_v, aud, new_a = candidate(new_v, new_a)
        value = loss(pix, aud)
        active = (best > 0) & (queries < cfg.queries)       # not fooled yet, budget left
        accept = active & (value < best)
        return (i + 1, per_example(accept, new_v, delta_v), per_example(accept, new_a, delta_a),
                jnp.where(accept, value, best), queries + active.astype(jnp.int32), k)

    carry = (jnp.zeros((), jnp.int32), delta_v, delta_a, best, queries, k_loop)
    carry = jax.lax.while_loop(cond, body, carry)
    _, delta_v, delta_a, best, queries, _ = carry
    pix, _, aud, _ = candidate(delta_v, delta_a)
    return (pix if attack_v else image, aud if attack_a else audio), queries, best <= 0
