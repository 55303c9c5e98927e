"""APGD-100 and Square in avjax vs straightforward PyTorch eager versions of the same algorithms.

    python benchmarks/strong_attacks.py [--size paper|small] [--steps 100] [--queries 5000] [--repeats 1]
                                        [--unroll 1] [--warmup 1]

Both modalities attacked (xAV, eps 0.006 normalised units each), the original nets' layout, batch 8 at paper
size. The PyTorch side is what a competent user writes: parameters frozen (`requires_grad_(False)`),
gradients w.r.t. the inputs only (`torch.autograd.grad`), Square's queries under `torch.no_grad`; the
"original way" column keeps parameter gradients on (as the released code's attack scripts). Square runs
every query (no example is fooled by random nets' design: `margin` is raised so every example survives),
so both sides do the same work. Prints the compile time of avjax's programs, median run times, and both
ratios (< 1: avjax faster). `--unroll` is APGD's scan unroll (avjax's programs are compiled before timing,
so `--warmup 0` times them fairly; a Square query costs the same whatever the budget, so a smaller
`--queries` gives its ratio sooner). Needs the `torch` extra.
"""
import argparse
import time

from _common import interleaved, torch_original_av

from avjax import cpu_flags

cpu_flags.apply()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

SIZES = {"paper": dict(image=224, audio=65535, batch=8, width=1.0),
         "small": dict(image=64, audio=8192, batch=32, width=0.25)}
EPS = 0.006
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def torch_apgd(net, z, a, y, eps_z, eps_a, steps, lower_z, upper_z):
    """APGD-CE (Croce & Hein), both modalities, per-example step size and checkpoints, in torch eager."""
    import torch
    import torch.nn.functional as F

    from avjax.attacks.apgd_attack import checkpoints

    def loss_grad(zz, aa):
        zz, aa = zz.clone().requires_grad_(True), aa.clone().requires_grad_(True)
        logits = net(zz, aa)
        losses = F.cross_entropy(logits, y, reduction="none")
        gz, ga = torch.autograd.grad(losses.sum(), (zz, aa))
        return losses.detach(), gz, ga

    def project(zz, aa):
        zz = torch.min(torch.max(zz, z - eps_z), z + eps_z).clamp(lower_z, upper_z)
        return zz, torch.clamp(torch.min(torch.max(aa, a - eps_a), a + eps_a), -1, 1)

    b = y.shape[0]
    view = lambda t, x: t.view(-1, *([1] * (x.dim() - 1)))  # noqa: E731
    x = project(z + eps_z * (2 * torch.rand_like(z) - 1), a + eps_a * (2 * torch.rand_like(a) - 1))
    loss, gz, ga = loss_grad(*x)
    best_x, best_g, best_loss, x_prev = x, (gz, ga), loss.clone(), x
    eta = torch.full((b,), 2.0)
    increases = torch.zeros(b)
    best_at_check, halved_at_check = loss.clone(), torch.ones(b, dtype=torch.bool)
    intervals = checkpoints(steps)
    for i in range(steps):
        alpha = 1.0 if i == 0 else 0.75
        (zz, aa), (zp, ap) = x, x_prev
        z1, a1 = project(zz + view(eta, zz) * eps_z * gz.sign(), aa + view(eta, aa) * eps_a * ga.sign())
        new = project(zz + alpha * (z1 - zz) + (1 - alpha) * (zz - zp), aa + alpha * (a1 - aa) + (1 - alpha) * (aa - ap))
        new_loss, ngz, nga = loss_grad(*new)
        increases += (new_loss > loss).float()
        better = new_loss > best_loss
        best_x = tuple(torch.where(view(better, n), n, o) for n, o in zip(new, best_x))
        best_g = tuple(torch.where(view(better, n), n, o) for n, o in zip((ngz, nga), best_g))
        best_loss = torch.where(better, new_loss, best_loss)
        x_prev, x, loss, gz, ga = x, new, new_loss, ngz, nga
        if intervals[i]:
            halve = (increases <= intervals[i] * 0.75) | (~halved_at_check & (best_at_check >= best_loss))
            eta = torch.where(halve, eta / 2, eta)
            x = tuple(torch.where(view(halve, n), bx, n) for n, bx in zip(x, best_x))
            gz, ga = (torch.where(view(halve, g), bg, g) for g, bg in zip((gz, ga), best_g))
            increases.zero_()
            best_at_check, halved_at_check = best_loss.clone(), halve
    return best_x


def torch_square(net, z, a, y, eps_z, eps_a, queries, lower_z, upper_z, p_init=0.8):
    """Square (L-inf) on both modalities in torch eager under no_grad, every query spent."""
    import torch

    from avjax.attacks.square_attack import SCHEDULE
    b, c, h, w = z.shape
    length = a.shape[-1]

    def margin(zz, aa):
        logits = net(zz, aa)
        true = logits.gather(1, y[:, None])[:, 0]
        other = logits.scatter(1, y[:, None], -float("inf")).max(1).values
        return true - other

    with torch.no_grad():
        dz = eps_z * torch.randint(0, 2, (b, c, 1, w)).float().mul(2).sub(1).expand_as(z)
        da = eps_a * torch.randint(0, 2, a.shape).float().mul(2).sub(1)
        clampz = lambda d: (z + d).clamp(lower_z, upper_z) - z  # noqa: E731
        dz, da = clampz(dz), (a + da).clamp(-1, 1) - a
        best = margin(z + dz, a + da)
        for i in range(queries - 1):
            p = p_init / 2 ** sum((i * 10000) // (queries - 1) > t for t in SCHEDULE)
            s = max(min(int(round((p * h * w) ** 0.5)), h - 1), 1)
            seg = max(min(int(round(p * length)), length - 1), 1)
            nz, na = dz.clone(), da.clone()
            for k in range(b):
                r, cc = np.random.randint(0, h - s + 1), np.random.randint(0, w - s + 1)
                nz[k, :, r:r + s, cc:cc + s] = eps_z[0, :, 0, 0].view(-1, 1, 1) * torch.randint(0, 2, (c, 1, 1)).mul(2).sub(1)
                st = np.random.randint(0, length - seg + 1)
                na[k, :, st:st + seg] = eps_a * (2 * np.random.randint(0, 2) - 1)
            nz, na = clampz(nz), (a + na).clamp(-1, 1) - a
            value = margin(z + nz, a + na)
            accept = value < best
            dz = torch.where(accept.view(-1, 1, 1, 1), nz, dz)
            da = torch.where(accept.view(-1, 1, 1), na, da)
            best = torch.where(accept, value, best)
    return z + dz, a + da


def main():
    import torch
    p = argparse.ArgumentParser()
    p.add_argument("--size", default="paper")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--queries", type=int, default=5000)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--unroll", type=int, default=1)
    p.add_argument("--warmup", type=int, default=1)
    args = p.parse_args()
    from avjax import attacks, porting
    from avjax.models import AVClassifier
    from tests import torch_reference as tr
    size = SIZES[args.size]
    nets = [n.eval() for n in torch_original_av(28, size["width"])]
    states = {k: {n: v.detach().numpy() for n, v in net.state_dict().items()}
              for k, net in zip(("sound", "frame", "classifier"), nets)}
    module = AVClassifier(num_classes=28, width=size["width"])
    # A large bias on class 0 (the label) in both frameworks: no example is ever fooled, so both sides
    # run every step and every query.
    with torch.no_grad():
        nets[2].fc1.bias[0] += 1e3
    states["classifier"] = {n: v.detach().numpy() for n, v in nets[2].state_dict().items()}
    variables = porting.port_original_states(states, module)
    fns = attacks.ModelFns(module, variables)
    rng = np.random.default_rng(0)
    pixels = rng.uniform(0, 1, (size["batch"], size["image"], size["image"], 3)).astype(np.float32)
    audio = (0.8 * rng.uniform(-1, 1, (size["batch"], size["audio"]))).astype(np.float32)
    label = np.zeros(size["batch"], np.int64)
    x, a, y = jnp.asarray(pixels), jnp.asarray(audio), jnp.asarray(label)
    tz = tr.normalize(torch.from_numpy(pixels.transpose(0, 3, 1, 2)))
    ta, ty = torch.from_numpy(audio[:, None]), torch.from_numpy(label)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    eps_z, lower, upper = EPS * torch.ones_like(std), (0 - mean) / std, (1 - mean) / std

    def torch_net(z, aa):
        return nets[2](nets[1](z), nets[0](aa))

    print(f"jax {jax.__version__}, torch {torch.__version__}; size {args.size}: {size}; "
          f"APGD-{args.steps} (scan unroll {args.unroll}), Square-{args.queries}")
    key = jax.random.key(0)
    apgd_cfg = attacks.apgd_config(eps_visual=EPS, eps_audio=EPS, units="normalized", steps=args.steps,
                                   unroll=args.unroll)
    square_cfg = attacks.square_config(eps_visual=EPS, eps_audio=EPS, units="normalized", queries=args.queries)
    for name, core, cfg in (("APGD", attacks.run_apgd, apgd_cfg), ("Square", attacks.run_square, square_cfg)):
        t0 = time.perf_counter()
        compiled = jax.jit(core, static_argnames=("cfg",)).lower(fns, x, a, y, EPS, EPS, cfg, key).compile()
        compile_s = time.perf_counter() - t0
        run_jax = lambda compiled=compiled: jax.block_until_ready(compiled(fns, x, a, y, EPS, EPS, key))  # noqa: E731
        if name == "APGD":
            def run_torch(original=False):
                for net in nets:
                    net.requires_grad_(original)
                return torch_apgd(torch_net, tz, ta, ty, eps_z, EPS, args.steps, lower, upper)
            fns_to_time = {"avjax": run_jax, "torch": run_torch, "torch original way": lambda: run_torch(True)}
        else:
            for net in nets:
                net.requires_grad_(False)
            fns_to_time = {"avjax": run_jax,
                           "torch": lambda: torch_square(torch_net, tz, ta, ty, eps_z, EPS, args.queries, lower, upper)}
        med = interleaved(fns_to_time, args.repeats, warmup=args.warmup if name == "APGD" else 0)
        line = f"{name}: compile {compile_s:.1f} s; " + "; ".join(f"{k} {v:.2f} s" for k, v in med.items())
        ratios = "; ".join(f"ratio avjax/{k} {med['avjax'] / v:.2f}" for k, v in med.items() if k != "avjax")
        print(line + " | " + ratios, flush=True)


if __name__ == "__main__":
    main()
