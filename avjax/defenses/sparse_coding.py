"""Lasso sparse codes of features over a fixed memory: min_h 1/2 ||x - h M||^2 + lam ||h||_1.

    codes = sparse_code(memory, features)          # memory (K, dim), one atom per row; features (B, dim)

Two solvers, both compiled, fixed-shape and differentiable (training and white-box attacks take
gradients through the coder). `gradient='implicit'` (default of the standard variant) differentiates the
lasso solution exactly through its optimality conditions on the support (one K x K solve per example in
the backward pass); `gradient='unrolled'` (default of `variant='original'`, as the released code)
backpropagates through every iteration. Unrolled FISTA is exact for the iterations it ran but its
momentum makes that derivative much larger than the solution's (x25 on a trained synthetic model, which
made fine-tuning diverge), hence the implicit default.

* `solver='fista'` (default): FISTA with adaptive restart and step 1/L, L the largest eigenvalue of
  M M^T (power iteration, `lipschitz`; pass it to skip the computation). Each example stops on its own
  once its objective fell by at most `tol` (relative; default 1e-6) over the last `block` iterations, and is frozen
  from then on, so its code never depends on its batch-mates.
* `solver='ista', variant='original'`: the released code's loop exactly - h0 = 0,
  h <- shrink(h - step * (h M - x) M^T, step * lam), stopping when the Frobenius norm of the change of the
  *whole batch's* code matrix is below `tol` (default 8e-4, the released value), or after `max_iter`
  iterations. `step` is the per-dataset
  constant of the released scripts (`ORIGINAL_STEPS`). `solver='ista'` with `variant='standard'` is ISTA
  with the per-example rule.

The iterations run as a `lax.scan` over blocks of `block` iterations; a block in which every example has
already stopped is skipped by `lax.cond`, so converged batches cost (almost) nothing while the program
keeps a fixed shape that reverse-mode autodiff can go through. Each block is rematerialised
(`jax.checkpoint`), so memory grows with the number of blocks, not iterations.
"""
import functools
import weakref

import jax
import jax.numpy as jnp

SOLVERS = ("fista", "ista")
GRADIENTS = ("implicit", "unrolled")
VARIANTS = ("standard", "original")
# The released scripts' ISTA step sizes (visual, audio) per dataset.
DEFAULT_TOL = {"standard": 1e-6, "original": 8e-4}
ORIGINAL_STEPS = {"music": (6e-6, 1e-6), "kinetics_sounds": (2e-6, 5.8e-7), "ave": (2e-6, 7e-7)}


class SolverError(FloatingPointError):
    """A non-finite value inside the sparse coder."""


def shrink(v, threshold):
    """Soft thresholding, the proximal map of threshold * ||.||_1."""
    return jnp.sign(v) * jnp.maximum(jnp.abs(v) - threshold, 0.0)


def lipschitz(memory, iters: int = 100):
    """Largest eigenvalue of M M^T (= of M^T M) by power iteration: the Lipschitz constant of the
    lasso gradient, so 1/L is the largest safe ISTA / FISTA step."""
    gram = memory.T @ memory if memory.shape[0] >= memory.shape[1] else memory @ memory.T
    v = jnp.ones((gram.shape[0],), gram.dtype) / jnp.sqrt(gram.shape[0])

    def body(_, v):
        w = gram @ v
        return w / jnp.maximum(jnp.linalg.norm(w), jnp.finfo(gram.dtype).tiny)

    v = jax.lax.fori_loop(0, iters, body, v)
    return v @ (gram @ v)


def lasso_objective(memory, features, codes, lam):
    """Per example: 1/2 ||x - h M||^2 + lam ||h||_1."""
    residual = features - codes @ memory
    return 0.5 * jnp.sum(residual * residual, -1) + lam * jnp.sum(jnp.abs(codes), -1)


def sparse_code(memory, features, *, lam=0.1, solver="fista", variant="standard", step=None, tol=None,
                max_iter=2000, lipschitz_constant=None, block=25, check_finite=True, gradient=None):
    """-> codes (B, K) of `features` (B, dim) over `memory` (K, dim); see the module docstring."""
    return sparse_code_with_iterations(
        memory, features, lam=lam, solver=solver, variant=variant, step=step, tol=tol, max_iter=max_iter,
        lipschitz_constant=lipschitz_constant, block=block, check_finite=check_finite, gradient=gradient)[0]


def sparse_code_with_iterations(memory, features, *, lam=0.1, solver="fista", variant="standard", step=None,
                                tol=None, max_iter=2000, lipschitz_constant=None, block=25, check_finite=True,
                                gradient=None):
    """-> (codes (B, K), iterations run per example (B,) int32); arguments as `sparse_code`."""
    if solver not in SOLVERS or variant not in VARIANTS:
        raise ValueError(f"unknown solver {solver!r} / variant {variant!r}; choose from {SOLVERS} / {VARIANTS}")
    if variant == "original" and (solver != "ista" or step is None):
        raise ValueError("variant='original' is the released ISTA loop: solver='ista' with its `step`")
    if memory.ndim != 2 or features.ndim != 2 or memory.shape[1] != features.shape[1]:
        raise ValueError(f"memory {memory.shape} (K, dim) and features {features.shape} (B, dim) do not match")
    tol = DEFAULT_TOL[variant] if tol is None else tol
    gradient = gradient or ("unrolled" if variant == "original" else "implicit")
    if gradient not in GRADIENTS:
        raise ValueError(f"unknown gradient {gradient!r}; choose one of {GRADIENTS}")
    if step is None and lipschitz_constant is None and memory.dtype == features.dtype:
        lipschitz_constant = _cached_lipschitz(memory)
    static = (solver, variant == "original", int(max_iter), int(block))
    codes, iters = _codes(memory, features, lam, step, tol, lipschitz_constant, static=static, gradient=gradient)
    if check_finite:
        codes = _raise_if_not_finite(codes)
    return codes, iters


@functools.partial(jax.jit, static_argnames=("static", "gradient"))
def _codes(memory, features, lam, step, tol, lipschitz_constant, *, static, gradient):
    """The coder as one compiled program per static options and shapes, so that an eager call (a notebook)
    costs what a jitted one does; inside a caller's jit it is inlined."""
    dtype = features.dtype
    memory = memory.astype(dtype)
    if step is None:
        big_l = lipschitz(memory) if lipschitz_constant is None else jnp.asarray(lipschitz_constant, dtype)
        step = 1.0 / jnp.maximum(big_l, jnp.finfo(dtype).tiny)
    args = (memory, features, jnp.asarray(lam, dtype), jnp.asarray(step, dtype), jnp.asarray(tol, dtype))
    if gradient == "implicit":
        return _implicit_solve(static, *args)
    solver, batch_stop, max_iter, block = static
    return _solve(*args, solver=solver, batch_stop=batch_stop, max_iter=max_iter, block=block)


_LIPSCHITZ_CACHE: dict = {}


def _cached_lipschitz(memory):
    """`lipschitz(memory)` computed once per concrete memory array (kept while the array lives); None under a
    transformation (the traced program then computes it)."""
    if isinstance(memory, jax.core.Tracer) or not isinstance(memory, jax.Array):
        return None
    key = id(memory)
    hit = _LIPSCHITZ_CACHE.get(key)
    if hit is not None and hit[0]() is memory:
        return hit[1]
    value = _lipschitz_program(memory)
    try:
        ref = weakref.ref(memory, lambda _, key=key: _LIPSCHITZ_CACHE.pop(key, None))
    except TypeError:  # an array type without weak references: no caching
        return value
    _LIPSCHITZ_CACHE[key] = (ref, value)
    return value


_lipschitz_program = jax.jit(lambda memory: lipschitz(memory))


def _solve(memory, x, lam, step, tol, *, solver, batch_stop, max_iter, block):
    mx = x @ memory.T               # (B, K): the gradient is h (M M^T) - x M^T
    gram = memory @ memory.T        # (K, K)
    batch = x.shape[0]
    zeros = jnp.zeros((batch, memory.shape[0]), x.dtype)
    fista = solver == "fista"

    def one_iteration(carry, i):
        h, y, t, done, iters = carry
        point = y if fista else h
        h_new = shrink(point - step * (point @ gram - mx), step * lam)
        stop = jnp.zeros_like(done)
        if batch_stop:  # the released rule: Frobenius norm of the whole batch's change, every iteration
            stop = jnp.broadcast_to(jnp.linalg.norm(h_new - h) < tol, done.shape)
        if fista:  # with O'Donoghue & Candes' adaptive restart: momentum reset when it points uphill
            restart = jnp.sum((point - h_new) * (h_new - h), axis=-1) > 0
            t = jnp.where(restart, 1.0, t)
            t_new = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * t * t))
            y_new = h_new + ((t - 1.0) / t_new)[:, None] * (h_new - h)
        else:
            t_new, y_new = t, h_new
        active = (~done) & (i < max_iter)
        keep = active[:, None]
        return (jnp.where(keep, h_new, h), jnp.where(keep, y_new, y), jnp.where(active, t_new, t),
                done | (active & stop), iters + active.astype(jnp.int32))

    @jax.checkpoint
    def run_block(carry, start):
        state, prev_objective = carry
        state = jax.lax.fori_loop(0, block, lambda j, c: one_iteration(c, start + j), state)
        if batch_stop:
            return state, prev_objective
        # per example, at the end of every block: stop once the objective fell by at most tol (relative)
        h, y, t, done, iters = state
        objective = lasso_objective(memory, x, h, lam)
        converged = prev_objective - objective <= tol * objective
        return (h, y, t, done | converged, iters), jnp.where(done, prev_objective, objective)

    def scan_body(carry, start):
        carry = jax.lax.cond(jnp.all(carry[0][3]), lambda c: c, lambda c: run_block(c, start), carry)
        return carry, None

    starts = jnp.arange(0, max_iter, block)
    init = (zeros, zeros, jnp.ones((batch,), x.dtype), jnp.zeros((batch,), bool),
            jnp.zeros((batch,), jnp.int32))
    ((h, _, _, _, iters), _), _ = jax.lax.scan(scan_body, (init, jnp.full((batch,), jnp.inf, x.dtype)), starts)
    return h, iters


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _implicit_solve(static, memory, features, lam, step, tol):
    solver, batch_stop, max_iter, block = static
    return _solve(memory, features, lam, step, tol, solver=solver, batch_stop=batch_stop, max_iter=max_iter,
                  block=block)


def _implicit_forward(static, memory, features, lam, step, tol):
    codes, iters = _implicit_solve(static, memory, features, lam, step, tol)
    return (codes, iters), (memory, codes)


def _implicit_backward(static, residuals, cotangents):
    """Implicit differentiation of the lasso solution: on the support S of each example's code,
    M_S (x - h_S M_S)^T = lam sign(h_S), so dh_S = (M_S M_S^T)^-1 M_S dx and dh_S/dlam =
    -(M_S M_S^T)^-1 sign(h_S); off the support dh = 0. One K x K solve per example (a relative ridge of
    1e-6 keeps near-singular supports finite)."""
    del static
    memory, codes = residuals
    g = cotangents[0]
    support = (codes != 0).astype(codes.dtype)
    gram = memory @ memory.T
    k = gram.shape[0]
    eye = jnp.eye(k, dtype=gram.dtype)
    ridge = 1e-6 * jnp.trace(gram) / k
    system = (gram + ridge * eye)[None] * (support[:, :, None] * support[:, None, :]) \
        + eye[None] * (1.0 - support)[:, :, None]
    u = jnp.linalg.solve(system, (g * support)[..., None])[..., 0] * support
    features_bar = u @ memory
    lam_bar = -jnp.sum(u * jnp.sign(codes))
    # the memory is a constant of the coder (ExFMem never trains it): no cotangent flows to it
    return jnp.zeros_like(memory), features_bar, lam_bar.astype(codes.dtype), None, None


_implicit_solve.defvjp(_implicit_forward, _implicit_backward)


def _raise_if_not_finite(codes):
    """Stop with an error instead of returning NaN codes. Under a transformation (jit, grad) the codes
    are abstract and the callers check their own outputs instead: training stops on a non-finite loss,
    evaluation on non-finite logits (a host callback here deadlocked XLA:CPU inside attack programs)."""
    if isinstance(codes, jax.core.Tracer):
        return codes
    if not bool(jnp.all(jnp.isfinite(codes))):
        raise SolverError("non-finite value inside the sparse coder (memory or features hold inf/NaN, "
                          "or the step is too large for this memory)")
    return codes


def blend(memory, features, codes, weight):
    """f' = a (h M) + (1 - a) f: the released code's average of the denoised and the original feature."""
    return weight * (codes @ memory.astype(features.dtype)) + (1.0 - weight) * features
