"""Where avjax's CPU time goes, against this CPU's own ceiling and PyTorch: what bounds the attack table and
the train step (CPU, 2 threads, both frameworks).

    python benchmarks/cpu_bounds.py [--repeats 5] [--size paper|small] [--parts ceiling,attack,table,convs,wgrad]
                                    [--threads 2]

ceiling  f32 GEMM 2048^3 in XLA and in PyTorch: the multiply-add rate this CPU gives each framework.
attack   each branch's input gradient with the other branch frozen (one attack step on one modality) and each
         branch's forward: ms, FLOPs (XLA's count), GFLOP/s; PyTorch competent
         (frozen parameters, gradients w.r.t. the input only; NCHW and channels-last, the faster one).
table    the robustness table of one batch (clean + FGSM/PGD/MIM x xA/xV/xAV, as benchmarks/attacks.py part b)
         modelled as counts of those passes times their standalone times (`--measured-table`: the measured
         tables beside it); then avjax's table with its visual passes at PyTorch's speed and its audio passes at
         the XLA GEMM ceiling: what the ratio could reach without faster ResNet kernels than PyTorch's.
convs    ResNet18's convolutions one by one (forward and input gradient, each shape times its count) in avjax and
         PyTorch: the kernels under the visual passes.
wgrad    the weight gradient of each distinct conv layer of both nets (the train step's extra work over an
         attack step): avjax (JAX's rule, as the train step runs it) vs PyTorch, and the GEMM that a weight
         gradient is (patches^T @ output gradient, a long contraction) in XLA vs PyTorch.
Needs the `torch` extra.
"""
import argparse

from _common import in_blocks

from avjax import cpu_flags

cpu_flags.apply()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402

# (name, input spatial size, in channels, out channels, kernel, stride, how many in ResNet18): its convolutions
# but the three 1x1 downsampling ones.
VISUAL_LAYERS = [("stem", 224, 3, 64, 7, 2, 1), ("layer1", 56, 64, 64, 3, 1, 4), ("layer2 down", 56, 64, 128, 3, 2, 1),
                 ("layer2", 28, 128, 128, 3, 1, 3), ("layer3 down", 28, 128, 256, 3, 2, 1),
                 ("layer3", 14, 256, 256, 3, 1, 3), ("layer4 down", 14, 256, 512, 3, 2, 1),
                 ("layer4", 7, 512, 512, 3, 1, 3)]
AUDIO_LAYERS = [("block1 conv1", 65535, 1, 64), ("block1 conv2", 32768, 64, 64), ("block2 conv1", 8192, 64, 128),
                ("block2 conv2", 4096, 128, 128), ("block3 conv1", 1024, 128, 256), ("block4 conv1", 128, 256, 512)]
SIZES = {"paper": dict(image=224, audio=65535, batch=8, width=1.0, gemm=2048),
         "small": dict(image=64, audio=8192, batch=4, width=0.25, gemm=256)}


def _timed(fns: dict, repeats: int) -> dict:
    """{name: median ms} of jitted or PyTorch functions, each timed in a block of its own (`_common.in_blocks`)."""
    return {k: v * 1e3 for k, v in in_blocks({k: (lambda f=f: jax.block_until_ready(f())) for k, f in fns.items()},
                                             repeats).items()}


def flops(fn, *args) -> float:
    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    return float((cost[0] if isinstance(cost, list) else cost)["flops"])


def ceiling(size, repeats):
    import torch
    n = size["gemm"]
    a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), jnp.float32)
    ta = torch.from_numpy(np.asarray(a))
    mm = jax.jit(lambda p, q: p @ q)
    med = _timed({"xla": lambda: mm(a, a), "torch": lambda: ta @ ta}, repeats)
    rate = {k: 2 * n ** 3 / (v / 1e3) / 1e9 for k, v in med.items()}
    print(f"[ceiling] f32 GEMM {n}^3: XLA {rate['xla']:.0f} GFLOP/s | PyTorch {rate['torch']:.0f} GFLOP/s", flush=True)
    return rate["xla"]


def branch_passes(size, repeats):
    """{pass: (avjax ms, torch ms, FLOPs)} for the visual/audio input gradient and forward at batch `size`."""
    import optax
    import torch
    import torch.nn.functional as F
    from attacks import setup
    fns, (x, a, y), _, (tz, ta_, ty), nets = setup(size)
    sound, frame, classifier = nets
    for net in nets:
        net.requires_grad_(False)
    # the model is an argument of each program, as in avjax's attack programs (baked in as constants, XLA:CPU
    # would pre-transform the kernels at compile time: ~20 ms faster per visual gradient, one program per model)
    encode_visual, encode_audio = jax.jit(lambda m, v: m.encode_visual(v)), jax.jit(lambda m, s: m.encode_audio(s))
    f_v, f_a = encode_visual(fns, x), encode_audio(fns, a)

    def ce(m, f_vis, f_aud):
        return optax.softmax_cross_entropy_with_integer_labels(m.classify(f_vis, f_aud)[0], y).mean()

    jax_fns = {"visual gradient": (jax.jit(jax.grad(lambda v, m: ce(m, m.encode_visual(v), f_a))), x),
               "audio gradient": (jax.jit(jax.grad(lambda s, m: ce(m, f_v, m.encode_audio(s)))), a),
               "visual forward": (lambda v, m: encode_visual(m, v), x), "audio forward": (lambda s, m: encode_audio(m, s), a)}
    with torch.no_grad():
        tf_v, tf_a = frame(tz), sound(ta_)
    tz_cl = tz.contiguous(memory_format=torch.channels_last)

    def t_visual_grad(z):
        z = z.detach().requires_grad_(True)
        return torch.autograd.grad(F.cross_entropy(classifier(frame(z), tf_a), ty), [z])

    def t_audio_grad():
        s = ta_.detach().requires_grad_(True)
        return torch.autograd.grad(F.cross_entropy(classifier(tf_v, sound(s)), ty), [s])

    def no_grad(fn, *args):
        with torch.no_grad():
            return fn(*args)

    torch_fns = {"visual gradient": {"NCHW": lambda: t_visual_grad(tz), "channels-last": lambda: t_visual_grad(tz_cl)},
                 "audio gradient": {"NCHW": t_audio_grad},
                 "visual forward": {"NCHW": lambda: no_grad(frame, tz), "channels-last": lambda: no_grad(frame, tz_cl)},
                 "audio forward": {"NCHW": lambda: no_grad(sound, ta_)}}
    out = {}
    for name, (fn, arg) in jax_fns.items():
        candidates = {f"torch {k}": v for k, v in torch_fns[name].items()}
        med = _timed({"avjax": lambda fn=fn, arg=arg: fn(arg, fns)} | candidates, repeats)
        best = min((k for k in med if k != "avjax"), key=med.get)
        out[name] = (med["avjax"], med[best], flops(fn, arg, fns))
        layouts = " | ".join(f"{k} {v:.1f} ms" for k, v in med.items() if k != "avjax")
        print(f"[attack] {name:15s} avjax {med['avjax']:7.1f} ms {out[name][2] / 1e9:6.1f} GFLOP "
              f"{out[name][2] / med['avjax'] / 1e6:6.1f} GFLOP/s | {layouts} | ratio to torch {med['avjax'] / med[best]:.2f}",
              flush=True)
    return out


def table_passes(steps: int = 10) -> dict:
    """Passes of each branch per batch of the robustness table (FGSM, PGD, MIM x xA, xV, xAV; each branch is
    attacked in two settings). avjax computes the clean-point gradient once (with the clean forward) and
    reuses it as every attack's first step; an attack computes its unattacked branch's features once, and the
    attacked branch's forward once more to classify the result (PGD and MIM: one program per setting; FGSM:
    one program for the three settings, a forward of each branch in two). PyTorch competent
    (`_common.competent_attack`) takes each attack's own first gradient, computes the unattacked branch once
    and classifies each adversarial example with both branches, after one clean forward."""
    avjax = {"gradient": 1 + 2 * 2 * (steps - 1), "forward": 2 + 2 * 3}
    competent = {"gradient": 2 * (1 + 2 * steps), "forward": 1 + 3 * (1 + 3)}
    return {who: {f"{branch} {kind}": n for branch in ("visual", "audio") for kind, n in counts.items()}
            for who, counts in (("avjax", avjax), ("torch", competent))}


def table(passes, xla_ceiling, measured):
    """The table modelled as passes x their standalone times (both frameworks), against the measured one, and
    what avjax's would take with its visual passes at PyTorch's speed and its audio passes at the ceiling."""
    counts = table_passes()
    model = {who: sum(n * passes[p][i] for p, n in counts[who].items()) / 1e3 for i, who in enumerate(counts)}
    print(f"[table] modelled from the passes: avjax {model['avjax']:.2f} s | torch competent {model['torch']:.2f} s "
          f"| ratio {model['avjax'] / model['torch']:.2f}", flush=True)
    if measured:
        print(f"[table] measured (benchmarks/attacks.py part b): avjax {measured[0]:.2f} s | torch competent "
              f"{measured[1]:.2f} s | ratio {measured[0] / measured[1]:.2f}", flush=True)
    ours = counts["avjax"]
    visual = sum(ours[p] * passes[p][1] for p in ("visual gradient", "visual forward")) / 1e3
    audio = sum(ours[p] * passes[p][2] for p in ("audio gradient", "audio forward")) / xla_ceiling / 1e9
    print(f"[table] avjax's passes with its visual ones at PyTorch's speed ({visual:.2f} s) and its audio ones at the "
          f"XLA GEMM ceiling ({audio:.2f} s): {visual + audio:.2f} s | ratio to the modelled torch competent "
          f"{(visual + audio) / model['torch']:.2f} (the visual passes alone {visual / model['torch']:.2f})", flush=True)


def visual_layers(size):
    """VISUAL_LAYERS scaled to `size` (frame side and width)."""
    scale = size["image"] / 224
    return [(name, max(1, round(hw * scale)), ci if name == "stem" else max(1, round(ci * size["width"])),
             max(1, round(co * size["width"])), k, s, count) for name, hw, ci, co, k, s, count in VISUAL_LAYERS]


def convs(size, repeats):
    """ResNet18's convolutions in an attack step: forward and input gradient (avjax's canonical convolution, as
    the nets run them) vs PyTorch (NCHW and channels-last, the faster one), times how often each occurs."""
    import torch
    from avjax.models import canonical_conv
    rng = np.random.default_rng(0)
    totals = np.zeros(4)
    for name, n, ci, co, k, s, count in visual_layers(size):
        x = jnp.asarray(rng.standard_normal((size["batch"], n, n, ci)), jnp.float32)
        w = jnp.asarray(rng.standard_normal((k, k, ci, co)) * 0.05, jnp.float32)

        def conv(x_, w_, s=s, k=k):
            return canonical_conv.conv_general_dilated(x_, w_, (s, s), ((k // 2, k // 2),) * 2,
                                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))

        g = jnp.ones_like(conv(x, w))
        forward = jax.jit(conv)
        input_gradient = jax.jit(lambda x_, w_, g_, conv=conv: jax.vjp(lambda xx: conv(xx, w_), x_)[1](g_)[0])
        tw = torch.from_numpy(np.asarray(w)).permute(3, 2, 0, 1).contiguous()
        layouts = {"NCHW": torch.contiguous_format, "channels-last": torch.channels_last}
        tx = {k_: torch.from_numpy(np.asarray(x)).permute(0, 3, 1, 2).contiguous(memory_format=f)
              for k_, f in layouts.items()}
        tg = {k_: torch.from_numpy(np.asarray(g)).permute(0, 3, 1, 2).contiguous(memory_format=f)
              for k_, f in layouts.items()}

        def no_grad(fn, *args):
            with torch.no_grad():
                return fn(*args)

        runs = {"avjax forward": lambda: forward(x, w), "avjax input gradient": lambda: input_gradient(x, w, g)}
        for k_ in layouts:
            runs[f"torch forward {k_}"] = lambda k_=k_: no_grad(torch.nn.functional.conv2d, tx[k_], tw, None, s, k // 2)
            runs[f"torch input gradient {k_}"] = lambda k_=k_: no_grad(
                torch.nn.grad.conv2d_input, tx[k_].shape, tw, tg[k_], s, k // 2)
        med = _timed(runs, repeats)
        row = [med["avjax forward"], min(med[f"torch forward {k_}"] for k_ in layouts),
               med["avjax input gradient"], min(med[f"torch input gradient {k_}"] for k_ in layouts)]
        totals += np.array(row) * count
        print(f"[convs] {name:12s} x{count}: forward avjax {row[0]:6.1f} ms | torch {row[1]:6.1f} ms || input gradient "
              f"avjax {row[2]:6.1f} ms | torch {row[3]:6.1f} ms", flush=True)
    print(f"[convs] ResNet18 (times each count): forward avjax {totals[0]:.0f} ms | torch {totals[1]:.0f} ms || input "
          f"gradient avjax {totals[2]:.0f} ms | torch {totals[3]:.0f} ms", flush=True)


def wgrad(size, repeats):
    import torch
    rng = np.random.default_rng(0)
    batch = size["batch"]
    layers = [(name, n, ci, co, (k, k), (s, s)) for name, n, ci, co, k, s, _ in visual_layers(size)]
    ascale = size["audio"] / 65535
    layers += [(name, max(8, round(n * ascale)), ci if ci == 1 else max(1, round(ci * size["width"])),
                max(1, round(co * size["width"])), (3,), (2,)) for name, n, ci, co in AUDIO_LAYERS]
    totals = np.zeros(2)
    for name, n, ci, co, kernel, strides in layers:
        nd = len(kernel)
        x = jnp.asarray(rng.standard_normal((batch,) + (n,) * nd + (ci,)), jnp.float32)
        w = jnp.asarray(rng.standard_normal(kernel + (ci, co)) * 0.05, jnp.float32)
        pads = tuple((k // 2, k // 2) for k in kernel)
        dn = ("NWC", "WIO", "NWC") if nd == 1 else ("NHWC", "HWIO", "NHWC")

        def conv(x_, w_, strides=strides, pads=pads, dn=dn):
            return lax.conv_general_dilated(x_, w_, strides, pads, dimension_numbers=dn)

        g = jnp.asarray(rng.standard_normal(conv(x, w).shape), jnp.float32)
        # every array an argument (a constant input would have its layout change folded at compile time)
        jax_wgrad = jax.jit(lambda x_, w_, g_, conv=conv: jax.vjp(lambda ww: conv(x_, ww), w_)[1](g_)[0])
        # a GEMM of the weight gradient's shape: (batch * output positions, taps * ci)^T @ (.., co)
        m = batch * int(np.prod(g.shape[1:-1]))
        p = jnp.asarray(rng.standard_normal((m, int(np.prod(kernel)) * ci)), jnp.float32)
        q = g.reshape(m, co)
        tn = jax.jit(lambda p_, q_: p_.T @ q_)
        tx = torch.from_numpy(np.asarray(jnp.moveaxis(x, -1, 1))).contiguous()
        tg = torch.from_numpy(np.asarray(jnp.moveaxis(g, -1, 1))).contiguous()
        tw_shape = (co, ci) + kernel
        grad_weight = torch.nn.grad.conv1d_weight if nd == 1 else torch.nn.grad.conv2d_weight
        tpad = tuple(k // 2 for k in kernel)
        tp, tq = torch.from_numpy(np.asarray(p)), torch.from_numpy(np.asarray(q))
        med = _timed({"avjax": lambda: jax_wgrad(x, w, g), "torch": lambda: grad_weight(tx, tw_shape, tg, strides, tpad),
                     "xla gemm": lambda: tn(p, q), "torch gemm": lambda: tp.T @ tq}, repeats)
        totals += [med["avjax"], med["torch"]]
        print(f"[wgrad] {name:12s} x {tuple(x.shape)}: avjax {med['avjax']:6.1f} ms | torch {med['torch']:6.1f} ms "
              f"| ratio {med['avjax'] / med['torch']:.2f} || as a GEMM ({m}x{p.shape[1]})^T @ ({m}x{co}): "
              f"XLA {med['xla gemm']:6.1f} ms | torch {med['torch gemm']:6.1f} ms", flush=True)
    print(f"[wgrad] these layers: avjax {totals[0]:.1f} ms | torch {totals[1]:.1f} ms", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--size", default="paper", choices=sorted(SIZES))
    ap.add_argument("--parts", default="ceiling,attack,table,convs,wgrad")
    ap.add_argument("--measured-table", default="", help="'avjax_s,torch_s' from benchmarks/attacks.py part b")
    ap.add_argument("--threads", type=int, default=2, help="PyTorch's intra-op threads")
    args = ap.parse_args()
    import torch
    torch.set_num_threads(args.threads)
    parts = args.parts.split(",")
    size = SIZES[args.size]
    print(f"jax {jax.__version__}, torch {torch.__version__}; size {args.size}: {size}; "
          f"XLA_FLAGS applied: {cpu_flags.CPU_XLA_FLAGS}", flush=True)
    xla_ceiling = ceiling(size, args.repeats) if {"ceiling", "table"} & set(parts) else None
    passes = branch_passes(size, args.repeats) if {"attack", "table"} & set(parts) else None
    if "table" in parts:
        measured = tuple(float(v) for v in args.measured_table.split(",")) if args.measured_table else None
        table(passes, xla_ceiling, measured)
    if "convs" in parts:
        convs(size, args.repeats)
    if "wgrad" in parts:
        wgrad(size, args.repeats)


if __name__ == "__main__":
    main()
