"""ResNet18 and its convolutions on XLA:CPU, each pass in the formulation avjax picks vs the direct convolution
vs PyTorch (the rules of `avjax/models/canonical_conv.formulation`, measured).

    python benchmarks/conv_formulations.py [--parts model,layers] [--sizes 32,64,128,224] [--repeats 7] [--out DIR]

- `model`: ResNet18 (width 1.0, eval mode) forward and input gradient (of the summed pooled features) at
  32x32 batch 64, 64x64 batch 16, 128x128 batch 16 and 224x224 batch 8: avjax as it runs ('chosen'),
  avjax with every convolution direct ('direct', the formulation before the rules), and PyTorch with frozen
  parameters (NCHW and channels-last, the faster; no_grad for the forward). Ratios: chosen / PyTorch and
  direct / PyTorch.
- `layers`: each distinct convolution of ResNet18 at those sizes, forward, input gradient and weight
  gradient, direct vs taps (the product of patches) vs PyTorch, the rule's pick marked with '*'.
Both frameworks on the same threads (2 by default, `--threads`); each function is timed in a block of its own
(medians), since PyTorch's spinning OpenMP threads slow an XLA run that follows them. With `--out DIR`, the
tables also go to DIR/results.md (sections `ResNet18` and `Layers`, for tools/readme_results.py). Needs the
`torch` extra.
"""
import argparse
import os

from _common import in_blocks

from avjax import cpu_flags

cpu_flags.apply()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from avjax.models import canonical_conv  # noqa: E402

BATCH = {32: 64, 64: 16, 128: 16, 224: 8}
# ResNet18's distinct convolutions at 224x224: (name, input side, in, out, kernel, stride)
LAYERS_224 = [("stem", 224, 3, 64, 7, 2), ("layer1 3x3", 56, 64, 64, 3, 1), ("layer2_0 3x3/2", 56, 64, 128, 3, 2),
              ("layer2_0 1x1/2", 56, 64, 128, 1, 2), ("layer2 3x3", 28, 128, 128, 3, 1),
              ("layer3_0 3x3/2", 28, 128, 256, 3, 2), ("layer3_0 1x1/2", 28, 128, 256, 1, 2),
              ("layer3 3x3", 14, 256, 256, 3, 1), ("layer4_0 3x3/2", 14, 256, 512, 3, 2),
              ("layer4_0 1x1/2", 14, 256, 512, 1, 2), ("layer4 3x3", 7, 512, 512, 3, 1)]


def _inputs(side, batch, seed=0):
    return jnp.asarray(np.random.default_rng(seed).uniform(0, 1, (batch, side, side, 3)), jnp.float32)


def _jax_resnet(formulation):
    """(forward, input gradient, variables) of avjax's ResNet18; formulation None is the rules' pick."""
    from avjax.models.resnet import ResNet18
    module = ResNet18()

    def forward(variables, x):
        return module.apply(variables, x)[0]

    def input_gradient(variables, x):
        return jax.grad(lambda v: forward(variables, v).sum())(x)

    return _under(formulation, jax.jit(forward)), _under(formulation, jax.jit(input_gradient)), module


def _under(formulation, jitted):
    """`jitted`, every call of it inside `canonical_conv.forced(formulation)` (None: the rules), so that whenever
    JAX traces it (its trace caches are keyed by function, not by the forced formulation) it is the right one."""
    if formulation is None:
        return jitted

    def call(*args):
        with canonical_conv.forced(formulation):
            return jitted(*args)
    return call


def model(sizes, repeats, threads, rows):
    import torch

    from tests import torch_reference as tr
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = tr.FrameNet(tr.ResNet18()).eval().requires_grad_(False)
    for side in sizes:
        batch = BATCH[side]
        x = _inputs(side, batch)
        runs = {}
        for label, form in (("chosen", None), ("direct", "direct")):
            forward, input_gradient, module = _jax_resnet(form)
            variables = module.init(jax.random.key(0), x[:1])
            runs[f"{label} forward"] = lambda f=forward, v=variables: jax.block_until_ready(f(v, x))
            runs[f"{label} input gradient"] = lambda f=input_gradient, v=variables: jax.block_until_ready(f(v, x))
        tx = {"NCHW": torch.from_numpy(np.asarray(x)).permute(0, 3, 1, 2).contiguous()}
        tx["channels-last"] = tx["NCHW"].contiguous(memory_format=torch.channels_last)

        def t_forward(z):
            with torch.no_grad():
                return net(z)

        def t_input_gradient(z):
            z = z.detach().requires_grad_(True)
            return torch.autograd.grad(net(z).sum(), [z])

        for layout, z in tx.items():
            runs[f"torch forward {layout}"] = lambda z=z: t_forward(z)
            runs[f"torch input gradient {layout}"] = lambda z=z: t_input_gradient(z)
        med = {k: v * 1e3 for k, v in in_blocks(runs, repeats).items()}
        for p in ("forward", "input gradient"):
            torch_best = min(med[f"torch {p} NCHW"], med[f"torch {p} channels-last"])
            rows.append(f"| {side}x{side} | {batch} | {p} | {med[f'chosen {p}']:.1f} | {med[f'direct {p}']:.1f} | "
                        f"{torch_best:.1f} | **{med[f'chosen {p}'] / torch_best:.2f}** | {med[f'direct {p}'] / torch_best:.2f} |")
            print(f"[model] {side:3d}x{side:<3d} batch {batch:2d} {p:14s}: avjax {med[f'chosen {p}']:7.1f} ms | "
                  f"direct {med[f'direct {p}']:7.1f} ms | torch {torch_best:7.1f} ms (NCHW {med[f'torch {p} NCHW']:.1f}, "
                  f"channels-last {med[f'torch {p} channels-last']:.1f}) | ratio to torch: avjax "
                  f"{med[f'chosen {p}'] / torch_best:.2f}, direct {med[f'direct {p}'] / torch_best:.2f}", flush=True)


def layers(sizes, repeats, threads, rows):
    import torch
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    for side in sizes:
        batch = BATCH[side]
        for name, n, ci, co, k, s in LAYERS_224:
            n = max(1, round(n * side / 224))
            x = jnp.asarray(rng.standard_normal((batch, n, n, ci)), jnp.float32)
            w = jnp.asarray(rng.standard_normal((k, k, ci, co)) * 0.05, jnp.float32)
            pads = ((k // 2, k // 2),) * 2

            def programs(s=s, pads=pads):
                """Fresh functions (JAX caches traces by function): forward, input and weight gradient."""
                def conv(x_, w_):
                    return canonical_conv.conv_general_dilated(x_, w_, (s, s), pads,
                                                               dimension_numbers=("NHWC", "HWIO", "NHWC"))
                return (conv, lambda x_, w_, g_: jax.vjp(lambda v: conv(v, w_), x_)[1](g_)[0],
                        lambda x_, w_, g_: jax.vjp(lambda v: conv(x_, v), w_)[1](g_)[0])

            g = jnp.asarray(rng.standard_normal(jax.eval_shape(programs()[0], x, w).shape), jnp.float32)
            runs, picks = {}, {}
            for form in ("direct", "taps"):
                fwd, ig, wg = (_under(form, jax.jit(f)) for f in programs())
                runs[f"{form} forward"] = lambda f=fwd: jax.block_until_ready(f(x, w))
                runs[f"{form} input gradient"] = lambda f=ig: jax.block_until_ready(f(x, w, g))
                runs[f"{form} weight gradient"] = lambda f=wg: jax.block_until_ready(f(x, w, g))
            spec = canonical_conv._Conv((s, s), pads, (1, 1), (1, 1),
                                        jax.lax.conv_dimension_numbers(x.shape, w.shape, ("NHWC", "HWIO", "NHWC")),
                                        None)
            for p in canonical_conv.PASSES:
                picks[p.replace("_", " ")] = canonical_conv.formulation(p, spec, x.shape, w.shape)
            tx = torch.from_numpy(np.asarray(x)).permute(0, 3, 1, 2).contiguous()
            tw = torch.from_numpy(np.asarray(w)).permute(3, 2, 0, 1).contiguous()
            tg = torch.from_numpy(np.asarray(g)).permute(0, 3, 1, 2).contiguous()

            def no_grad(fn, *args):
                with torch.no_grad():
                    return fn(*args)

            runs["torch forward"] = lambda: no_grad(torch.nn.functional.conv2d, tx, tw, None, s, k // 2)
            runs["torch input gradient"] = lambda: no_grad(torch.nn.grad.conv2d_input, tx.shape, tw, tg, s, k // 2)
            runs["torch weight gradient"] = lambda: no_grad(torch.nn.grad.conv2d_weight, tx, tw.shape, tg, s, k // 2)
            med = {key: v * 1e3 for key, v in in_blocks(runs, repeats).items()}
            cells = []
            for p, pick in picks.items():
                d, t, ref = med[f"direct {p}"], med[f"taps {p}"], med[f"torch {p}"]
                chosen = t if pick == "taps" else d
                cells.append(f"{p}: direct {d:6.2f}{'*' if pick == 'direct' else ' '} taps {t:6.2f}"
                             f"{'*' if pick == 'taps' else ' '} torch {ref:6.2f} ({chosen / ref:4.2f})")
                rows.append(f"| {side} | {name} | {n}x{n} | {p} | {d:.2f} | {t:.2f} | {pick} | {ref:.2f} | {chosen / ref:.2f} |")
            print(f"[layers] {side:3d}px b{batch:2d} {name:15s} {n:3d}x{n:<3d} | " + " | ".join(cells), flush=True)


HEADERS = {
    "model": ("ResNet18", "| frame | batch | pass | avjax ms | direct ms | PyTorch ms | avjax / PyTorch | direct / PyTorch |\n"
                          "|---|---:|---|---:|---:|---:|---:|---:|"),
    "layers": ("Layers", "| frame | layer | input map | pass | direct ms | taps ms | picked | PyTorch ms | picked / PyTorch |\n"
                         "|---:|---|---|---|---:|---:|---|---:|---:|"),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", default="model,layers")
    ap.add_argument("--sizes", default="32,64,128,224")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="", help="also write the tables to OUT/results.md")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    unknown = set(sizes) - set(BATCH)
    if unknown:
        raise SystemExit(f"--sizes: no batch size for {sorted(unknown)}; known: {sorted(BATCH)}")
    header = (f"jax {jax.__version__} on {jax.default_backend()}, {args.threads} threads for both frameworks, "
              f"median of {args.repeats} runs, each function timed in a block of its own; 'direct' forces XLA's "
              f"convolution for every pass, 'taps' the product of patches; ratios are avjax / PyTorch (< 1: avjax faster).")
    print(header, flush=True)
    sections = []
    for part in args.parts.split(","):
        rows = []
        {"model": model, "layers": layers}[part](sizes, args.repeats, args.threads, rows)
        title, table_head = HEADERS[part]
        sections.append(f"## {title}\n\n{table_head}\n" + "\n".join(rows) + "\n")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "results.md"), "w") as f:
            f.write("# Convolution formulations\n\n" + header + "\n\n" + "\n".join(sections))


if __name__ == "__main__":
    main()
