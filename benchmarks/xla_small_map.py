"""Stand-alone reproducer: XLA:CPU's convolution on a 2x2 feature map is far slower than the same convolution
written as one matrix product of its patches. Pure `jax.lax`, no avjax, so it can be reported upstream.

    python benchmarks/xla_small_map.py            # prints both times and their ratio per shape
    python benchmarks/xla_small_map.py --check    # exit status 1 once the workaround is no longer needed

avjax works around it (`avjax/models/canonical_conv.py`: the product of patches on maps of at most 2x2).
Run `--check` after each jax upgrade: when no shape below is at least `--needed` times slower direct than as
patches, the workaround can go (and the rules in `canonical_conv.formulation` should be re-measured with
benchmarks/conv_formulations.py).
"""
import argparse
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

SHAPES = [(16, 2, 512), (64, 2, 256), (64, 1, 512)]  # (batch, map side, channels): ResNet18's last stage


def direct(x, w):
    return lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))


def as_patches(x, w):
    patches = lax.conv_general_dilated_patches(x, (3, 3), (1, 1), ((1, 1), (1, 1)),
                                               dimension_numbers=("NHWC", "OIHW", "NHWC"))
    # patches' features are ordered (in, kh, kw): the kernel as an (in * kh * kw, out) matrix in that order
    return patches @ w.transpose(2, 0, 1, 3).reshape(-1, w.shape[-1])


def median_ms(fn, *args, repeats):
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--check", action="store_true", help="exit 1 when the workaround is no longer needed")
    ap.add_argument("--needed", type=float, default=3.0, help="ratio direct / patches that still needs it")
    args = ap.parse_args()
    print(f"jax {jax.__version__}, {jax.default_backend()}, {jax.devices()[0].device_kind}")
    rng = np.random.default_rng(0)
    worst = 0.0
    for batch, side, channels in SHAPES:
        x = jnp.asarray(rng.standard_normal((batch, side, side, channels)), jnp.float32)
        w = jnp.asarray(rng.standard_normal((3, 3, channels, channels)) * 0.05, jnp.float32)
        f_direct, f_patches = jax.jit(direct), jax.jit(as_patches)
        np.testing.assert_allclose(f_direct(x, w), f_patches(x, w), rtol=1e-4, atol=1e-4)
        t_direct = median_ms(f_direct, x, w, repeats=args.repeats)
        t_patches = median_ms(f_patches, x, w, repeats=args.repeats)
        worst = max(worst, t_direct / t_patches)
        print(f"3x3 conv, batch {batch}, {side}x{side} map, {channels}->{channels}: lax.conv_general_dilated "
              f"{t_direct:.2f} ms | patches @ kernel {t_patches:.2f} ms | ratio {t_direct / t_patches:.1f}")
    needed = worst >= args.needed
    print(f"workaround {'still needed' if needed else 'no longer needed'}: worst ratio {worst:.1f} "
          f"(threshold {args.needed})")
    if args.check and not needed:
        sys.exit(1)


if __name__ == "__main__":
    main()
