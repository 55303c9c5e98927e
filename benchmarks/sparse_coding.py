"""The ExFMem sparse coder: avjax's default (FISTA, step 1/L, per-example stop) against the released
ISTA settings and a plain PyTorch ISTA loop with the optimal step; and what the memory costs a model.

    python benchmarks/sparse_coding.py [--repeats 3] [--k 1024] [--dim 512] [--batch 16]

(a) Per dataset, the released loop (`solver='ista', variant='original'`, its step alpha, batch-global stop
    at 8e-4, <= 2001 iterations) on features scaled so that alpha * L = 0.9 (the released code asserts
    alpha * L <= 1). Then the time avjax's FISTA (step 1/L) and a plain PyTorch ISTA loop with step 1/L
    (no_grad, objective checked every 25 iterations) take until every example's objective is at most the
    released one, and the ratios (> 1: avjax faster). Also avjax's default run to its own stopping rule.
(b) Forward and PGD-10 of the AV model (width 0.25, 64x64 frames, 8192 samples) with and without a
    K-atom memory: the cost of the defense.
CPU, 2 threads. The features are synthetic (non-negative, correlated, like ReLU encoder outputs).
"""
import argparse
import time

from _common import interleaved

from avjax import cpu_flags

cpu_flags.apply()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402


def torch_ista_until(memory, x, lam, target, check_every=25, max_iter=50_000):
    """Plain PyTorch ISTA with step 1/L until each example's objective <= target; -> (seconds, iters)."""
    import torch
    m, xs = torch.from_numpy(np.asarray(memory, np.float32)), torch.from_numpy(np.asarray(x, np.float32))
    target = torch.from_numpy(np.asarray(target))
    with torch.no_grad():
        t0 = time.perf_counter()
        gram, mx = m @ m.T, xs @ m.T
        big_l = torch.linalg.eigvalsh(m.T @ m)[-1]
        step = 1.0 / big_l
        h = torch.zeros(x.shape[0], memory.shape[0])
        for it in range(1, max_iter + 1):
            v = h - step * (h @ gram - mx)
            h = torch.sign(v) * torch.clamp(v.abs() - step * lam, min=0)
            if it % check_every == 0:
                r = xs - h @ m
                obj = 0.5 * (r * r).sum(-1) + lam * h.abs().sum(-1)
                if bool((obj <= target).all()):
                    break
        return time.perf_counter() - t0, it


def part_a(args):
    import torch
    torch.set_num_threads(2)
    from avjax import defenses
    from tests.defenses.features import feature_memory
    memory0, x0 = feature_memory(args.k, args.dim, args.batch, factors=16)
    big_l0 = float(defenses.lipschitz(jnp.asarray(memory0)))
    for dataset, (alpha, _) in defenses.ORIGINAL_STEPS.items():
        scale = np.sqrt(0.9 / (alpha * big_l0))  # the released assertion holds with margin
        memory, x = memory0 * scale, x0 * scale
        m, xs = jnp.asarray(memory), jnp.asarray(x)
        released = jax.jit(lambda m, xs, a=alpha: defenses.sparse_code_with_iterations(
            m, xs, solver="ista", variant="original", step=a, max_iter=2001))
        h_rel, it_rel = released(m, xs)
        target = np.asarray(defenses.lasso_objective(m, xs, h_rel, 0.1))
        # the fewest FISTA iterations (in blocks of 25) at which every example is at most as high
        n, h_def = 0, None
        while h_def is None or np.any(np.asarray(defenses.lasso_objective(m, xs, h_def, 0.1)) > target):
            n += 25
            h_def = defenses.sparse_code(m, xs, tol=-1.0, max_iter=n)
        fista = jax.jit(lambda m, xs, n=n: defenses.sparse_code(m, xs, tol=-1.0, max_iter=n))
        default = jax.jit(lambda m, xs: defenses.sparse_code_with_iterations(m, xs))
        h_full, it_full = default(m, xs)
        t = interleaved({"released": lambda: jax.block_until_ready(released(m, xs)),
                         "fista": lambda: jax.block_until_ready(fista(m, xs)),
                         "default": lambda: jax.block_until_ready(default(m, xs))}, args.repeats, warmup=1)
        t_torch, it_torch = torch_ista_until(memory, x, 0.1, target)
        optimum = np.asarray(defenses.lasso_objective(m, xs, h_full, 0.1))
        print(f"(a) {dataset:16s} released ISTA a={alpha:g}: {t['released']:.3f} s, {int(it_rel[0])} it, mean "
              f"objective {target.mean():.4f} (default FISTA to convergence: {optimum.mean():.4f}, "
              f"{int(np.max(it_full))} it, {t['default']:.3f} s)")
        print(f"    to the released objective per example: avjax FISTA {t['fista']:.4f} s ({n} it), "
              f"PyTorch ISTA step 1/L {t_torch:.4f} s ({it_torch} it) | speed-up vs released "
              f"{t['released'] / t['fista']:.1f}x, vs PyTorch ISTA {t_torch / t['fista']:.1f}x")


def part_b(args):
    from avjax import attacks, defenses
    from avjax.configs.base import base_config
    from avjax.models import build
    cfg = base_config().model.to_dict()
    cfg.update(num_classes=8, width=0.25)
    plain = build(dict(cfg))
    defended = build(dict(cfg, memory=dict(cfg["memory"], size=args.k)))
    rng = np.random.default_rng(0)
    image = jnp.asarray(rng.uniform(0, 1, (16, 64, 64, 3)), jnp.float32)
    audio = jnp.asarray(rng.uniform(-1, 1, (16, 8192)), jnp.float32)
    label = jnp.asarray(rng.integers(0, 8, 16))
    variables = plain.init(jax.random.key(0), image, audio)
    f_v, f_a = plain.apply(variables, image, audio, method="raw_features")
    bank_v = np.abs(rng.normal(size=(args.k, f_v.shape[1]))) * float(jnp.mean(jnp.abs(f_v)))
    bank_a = np.abs(rng.normal(size=(args.k, f_a.shape[1]))) * float(jnp.mean(jnp.abs(f_a)))
    models = {"undefended": attacks.ModelFns(plain, variables),
              "ExFMem": attacks.ModelFns(defended, {**variables,
                                                    "memory": defenses.memory.memory_collection(bank_v, bank_a)})}
    forward = jax.jit(lambda fns: fns(image, audio)[0])
    fwd, pgd = {}, {}
    for name, fns in models.items():
        fwd[name] = lambda fns=fns: jax.block_until_ready(forward(fns))
        pgd[name] = lambda fns=fns: jax.block_until_ready(attacks.pgd(fns, image, audio, label, eps_visual=0.02,
                                                                      eps_audio=0.02))
    tf, tp = interleaved(fwd, args.repeats, warmup=1), interleaved(pgd, args.repeats, warmup=1)
    print(f"(b) forward, batch 16: undefended {tf['undefended'] * 1e3:.1f} ms, ExFMem (K={args.k}) "
          f"{tf['ExFMem'] * 1e3:.1f} ms ({tf['ExFMem'] / tf['undefended']:.1f}x)")
    print(f"    PGD-10 xAV, batch 16: undefended {tp['undefended']:.2f} s, ExFMem {tp['ExFMem']:.2f} s "
          f"({tp['ExFMem'] / tp['undefended']:.1f}x)")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--k", type=int, default=1024)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--part", default="ab")
    args = p.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; K={args.k}, dim={args.dim}, batch {args.batch}")
    if "a" in args.part:
        part_a(args)
    if "b" in args.part:
        part_b(args)


if __name__ == "__main__":
    main()
