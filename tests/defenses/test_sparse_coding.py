"""The sparse coder: reaches the lasso optimum, codes each example independently, differentiates
correctly, and `variant='original'` is the released ISTA loop iteration for iteration."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avjax import defenses
from tests.defenses.features import feature_memory


def released_ista(memory, x, step, lam, tol, max_iter):
    """A plain NumPy restatement of the released loop (D = memory.T (dim, K), one column per example)."""
    d, xs = memory.T.astype(np.float64), x.T.astype(np.float64)
    h = np.zeros((d.shape[1], xs.shape[1]))
    for it in range(1, max_iter + 1):
        v = h - step * d.T @ (d @ h - xs)
        h_new = np.sign(v) * np.maximum(np.abs(v) - step * lam, 0.0)
        change = np.linalg.norm(h_new - h)
        h = h_new
        if change < tol:
            break
    return h.T, it


def test_default_solver_reaches_the_lasso_optimum_of_scikit_learn():
    from sklearn.linear_model import Lasso
    memory, x = feature_memory(96, 48, 6)
    codes = defenses.sparse_code(jnp.asarray(memory), jnp.asarray(x))
    dim = memory.shape[1]
    # scikit-learn: 1/(2 n) ||y - X w||^2 + alpha ||w||_1 with n = dim, so alpha = lam / dim
    ref = np.stack([Lasso(alpha=0.1 / dim, fit_intercept=False, tol=1e-12, max_iter=200_000)
                    .fit(memory.T.astype(np.float64), xi.astype(np.float64)).coef_ for xi in x])
    ours = np.asarray(defenses.lasso_objective(memory, x, codes, 0.1))
    best = np.asarray(defenses.lasso_objective(memory.astype(np.float64), x.astype(np.float64), ref, 0.1))
    np.testing.assert_array_less(np.abs(ours - best) / best, 1e-4)
    assert np.mean(np.asarray(codes) == 0) > 0.5  # sparse


def test_each_example_is_coded_independently_of_its_batch_mates():
    memory, x = feature_memory(128, 32, 16)
    m, xs = jnp.asarray(memory), jnp.asarray(x)
    batch = np.asarray(defenses.sparse_code(m, xs))
    for i in (0, 5, 15):
        alone = np.asarray(defenses.sparse_code(m, xs[i:i + 1]))[0]
        # float32 rounding only: alone is another matmul shape, which XLA may accumulate in another order
        # (up to 8e-6 after the coder's iterations, seen under the suite's optimisation level 0); the
        # batch-coupled released loop below differs by more than 1e-3
        np.testing.assert_allclose(alone, batch[i], rtol=0, atol=5e-5)
    # the released loop stops on the whole batch's change: an example's code depends on the others
    step = 0.5 / float(defenses.lipschitz(m))
    orig = lambda v: np.asarray(defenses.sparse_code(m, v, solver="ista", variant="original", step=step))  # noqa: E731
    batch_o = orig(xs)
    alone_o = np.stack([orig(xs[i:i + 1])[0] for i in range(4)])
    assert np.max(np.abs(alone_o - batch_o[:4])) > 1e-3


def test_original_variant_is_the_released_loop_iteration_for_iteration():
    memory, x = feature_memory(64, 32, 8, seed=3)
    step = 0.9 / float(defenses.lipschitz(jnp.asarray(memory)))
    for tol, max_iter in ((8e-4, 2001), (1e-9, 60)):  # stopped by tol / by the iteration cap
        codes, iters = defenses.sparse_code_with_iterations(
            jnp.asarray(memory), jnp.asarray(x), solver="ista", variant="original", step=step, tol=tol,
            max_iter=max_iter)
        ref, ref_iters = released_ista(memory, x, step, 0.1, tol, max_iter)
        assert set(np.asarray(iters).tolist()) == {ref_iters}
        np.testing.assert_allclose(np.asarray(codes), ref, atol=2e-4)


@pytest.mark.parametrize("solver,gradient,tol", [("fista", "unrolled", -1.0), ("ista", "unrolled", -1.0),
                                                 ("fista", "implicit", 1e-14)])
def test_gradients_through_the_solver_match_finite_differences(solver, gradient, tol):
    with jax.enable_x64(True):
        memory, x = feature_memory(12, 6, 2, seed=1)
        m, xs = jnp.asarray(memory, jnp.float64), jnp.asarray(x, jnp.float64)
        w = jnp.asarray(np.random.default_rng(2).normal(size=x.shape))

        def loss(features):
            # unrolled: a fixed number of iterations (tol < 0 never stops), the function finite differences
            # see; implicit: the derivative of the solution, which a converged solve reproduces
            codes = defenses.sparse_code(m, features, solver=solver, tol=tol, max_iter=3000, block=20,
                                         gradient=gradient)
            return jnp.sum(w * defenses.blend(m, features, codes, 0.5))

        grad = np.asarray(jax.grad(loss)(xs))
        eps = 1e-6
        fd = np.zeros_like(grad)
        for idx in np.ndindex(*x.shape):
            d = np.zeros(x.shape)
            d[idx] = eps
            fd[idx] = (loss(xs + d) - loss(xs - d)) / (2 * eps)
        np.testing.assert_allclose(grad, fd, rtol=1e-4, atol=1e-6)


def test_bad_input_is_a_clear_error():
    memory, x = feature_memory(16, 8, 2)
    with pytest.raises(ValueError, match="do not match"):
        defenses.sparse_code(jnp.asarray(memory), jnp.asarray(x[:, :4]))
    with pytest.raises(ValueError, match="released ISTA loop"):
        defenses.sparse_code(jnp.asarray(memory), jnp.asarray(x), variant="original")
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(defenses.SolverError, match="non-finite value inside the sparse coder"):
        defenses.sparse_code(jnp.asarray(memory), jnp.asarray(bad))


def test_eager_calls_reuse_one_program_and_one_lipschitz_constant_per_memory():
    """Called eagerly (a notebook), the coder compiles once per static options and shapes and computes the
    Lipschitz constant of a memory once; the codes equal those of the same call inside jit."""
    from avjax.defenses import sparse_coding
    memory, x = feature_memory(64, 32, 8, seed=5)
    m, xs = jnp.asarray(memory), jnp.asarray(x)
    first = defenses.sparse_code(m, xs)
    programs, constants = sparse_coding._codes._cache_size(), sparse_coding._lipschitz_program._cache_size()
    assert id(m) in sparse_coding._LIPSCHITZ_CACHE
    again = defenses.sparse_code(m, xs * 1.5)
    assert sparse_coding._codes._cache_size() == programs  # no retrace for new values of the same shapes
    assert sparse_coding._lipschitz_program._cache_size() == constants
    np.testing.assert_array_equal(np.asarray(sparse_coding._LIPSCHITZ_CACHE[id(m)][1]),
                                  np.asarray(sparse_coding._lipschitz_program(m)))
    jitted = jax.jit(lambda mm, v: defenses.sparse_code(mm, v))
    np.testing.assert_allclose(np.asarray(jitted(m, xs)), np.asarray(first), rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(jitted(m, xs * 1.5)), np.asarray(again), rtol=0, atol=1e-6)
    # another memory of the same shape is another constant, not the cached one
    other = jnp.asarray(memory * 2.0)
    np.testing.assert_allclose(np.asarray(defenses.sparse_code(other, xs * 2.0)),
                               np.asarray(defenses.sparse_code(jnp.asarray(memory * 2.0), xs * 2.0)), atol=1e-6)
    assert float(sparse_coding._LIPSCHITZ_CACHE[id(other)][1]) == pytest.approx(
        4.0 * float(sparse_coding._LIPSCHITZ_CACHE[id(m)][1]), rel=1e-4)
