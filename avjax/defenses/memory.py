"""The external feature memory (ExFMem): what a defended model stores, and how a feature uses it.

A memory is a frozen collection of the model's variables, `variables['memory']`:
    visual, audio                   (K, dim) banks of training features, one atom per row
    lipschitz_visual, lipschitz_audio   largest eigenvalue of M M^T per bank (cached for FISTA's step)
It is saved with checkpoints and exported models and never touched by the optimizer. At inference,
training and under attack, each feature f becomes a * (h M) + (1 - a) * f with h its lasso code
(`sparse_code`), before fusion.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from avjax.defenses.sparse_coding import blend, lipschitz, sparse_code

MODALITIES = ("visual", "audio")


@dataclasses.dataclass(frozen=True)
class MemorySpec:
    """How a defended model codes its features (from `config.model.memory`; hashable, static)."""

    size: int            # K atoms per modality
    lam: float           # l1 weight of the lasso (the paper's 0.1)
    blend: float | None  # a in a * (h M) + (1 - a) * f (0.5; 0.6 for Kinetics-Sounds); None: a is the value
                         # variables['memory']['blend'] (one compiled program for every a)
    solver: str          # 'fista' | 'ista'
    variant: str         # 'standard' | 'original' (the released batch-global ISTA loop)
    step_visual: float   # ISTA step; 0: 1/L
    step_audio: float
    tol: float
    max_iter: int
    block: int
    gradient: str        # what a gradient through the coder is; see GRADIENTS


# How gradients go through the memory (the forward pass is always the exact defended feature):
#   'default' the solver's own ('implicit'; 'unrolled' for the released loop), 'implicit' / 'unrolled'
#   (see sparse_coding), and the BPDA surrogates of adaptive attacks (Athalye et al. 2018):
#   'bpda_identity' (d f'/d f = I) and 'bpda_ridge' (the closed-form ridge coder
#   h = f M^T (M M^T + lam I)^-1, blended like the lasso code).
GRADIENTS = ("default", "implicit", "unrolled", "bpda_identity", "bpda_ridge")


def defend_feature(spec: MemorySpec, bank, big_l, features, step, weight=None):
    """-> the blended feature a * (h M) + (1 - a) * f of `features` (B, dim) over `bank` (K, dim); a is
    `weight` when given (a traced value), else `spec.blend`."""
    if spec.gradient not in GRADIENTS:
        raise ValueError(f"unknown memory gradient {spec.gradient!r}; choose one of {GRADIENTS}")
    weight = spec.blend if weight is None else weight
    if weight is None:
        raise ValueError("the memory's blend weight is neither in its spec nor given")
    codes = memory_codes(spec, bank, big_l, features, step)
    defended = blend(bank, features, codes, weight)
    if spec.gradient == "bpda_identity":
        return features + jax.lax.stop_gradient(defended - features)
    if spec.gradient == "bpda_ridge":
        surrogate = blend(bank, features, ridge_code(bank, features, spec.lam), weight)
        return surrogate + jax.lax.stop_gradient(defended - surrogate)
    return defended


def memory_codes(spec: MemorySpec, bank, big_l, features, step):
    """-> the lasso codes h (B, K) of `features` over `bank`, solved as `spec` says."""
    solver_gradient = spec.gradient if spec.gradient in ("implicit", "unrolled") else None
    return sparse_code(bank, features, lam=spec.lam, solver=spec.solver, variant=spec.variant,
                       step=step or None, tol=None if spec.tol < 0 else spec.tol, max_iter=spec.max_iter,
                       lipschitz_constant=big_l, block=spec.block, gradient=solver_gradient)


def ridge_code(bank, features, lam):
    """h = f M^T (M M^T + lam I)^-1: the differentiable closed-form stand-in for the lasso code."""
    bank = bank.astype(features.dtype)
    gram = bank @ bank.T + lam * jnp.eye(bank.shape[0], dtype=features.dtype)
    return jnp.linalg.solve(gram, (features @ bank.T).T).T


def memory_collection(visual, audio) -> dict:
    """The `memory` collection of two banks (numpy or jax arrays, (K, dim) each), L cached."""
    out = {}
    for name, bank in zip(MODALITIES, (visual, audio)):
        bank = np.asarray(bank, np.float32)
        if bank.ndim != 2 or not np.all(np.isfinite(bank)):
            raise ValueError(f"{name} memory must be a finite (K, dim) array, got shape {bank.shape}")
        out[name] = bank
        out[f"lipschitz_{name}"] = np.asarray(lipschitz(jnp.asarray(bank)), np.float32)
    return out


def check_memory(memory: dict, spec: MemorySpec, dims: dict, where: str):
    """A memory must fit the model: both banks present, K = spec.size, feature dims equal the model's."""
    for name in MODALITIES:
        if name not in memory:
            raise ValueError(f"{where}: no {name} memory, but the model is defended by ExFMem "
                             f"(model.memory.size = {spec.size}); build the memory first")
        shape = tuple(np.shape(memory[name]))
        if shape != (spec.size, dims[name]):
            raise ValueError(f"{where}: {name} memory has shape {shape}, but the model needs "
                             f"({spec.size}, {dims[name]}) (model.memory.size, its {name} feature dim)")
