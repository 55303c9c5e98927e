"""Attack cost in avjax vs PyTorch eager on the same nets (CPU, 2 threads), against two baselines.

    python benchmarks/attacks.py [--repeats 3] [--size paper|small] [--parts a,b] [--loops fori,unroll]

Baselines: "torch competent", what a competent user writes (parameters frozen, gradients w.r.t. the
attacked inputs only, the unattacked branch's features once under no_grad, evaluation forward under
no_grad; `_common.competent_attack`), and "torch original way" (the released main_attack.py: parameter
gradients on, both branches recomputed every step; tests/torch_attacks.py).
(a) PGD-10 with both modalities attacked, batch 8 (paper: 224x224, 65535 samples).
(b) The full robustness evaluation of one batch as `avjax.evaluation.robustness` runs it: clean +
    FGSM + PGD + MIM x {xA, xV, xAV} (avjax shares FGSM's gradient across settings and skips the frozen
    branch of single-modality attacks).
Prints median times and both ratios avjax / torch (< 1: avjax faster). Needs the `torch` extra.
"""
import argparse

from _common import interleaved, torch_original_av

from avjax import cpu_flags

cpu_flags.apply()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

SIZES = {"paper": dict(image=224, audio=65535, batch=8, width=1.0),
         "small": dict(image=64, audio=8192, batch=64, width=0.25)}
EPS = {"xA": (0.0, 0.012), "xV": (0.012, 0.0), "xAV": (0.006, 0.006)}


def setup(size, num_classes=28):
    import torch

    from avjax import attacks, porting
    from avjax.models import AVClassifier
    from tests import torch_reference as tr
    nets = [n.eval() for n in torch_original_av(num_classes, size["width"])]
    states = {p: {k: v.detach().numpy() for k, v in n.state_dict().items()}
              for p, n in zip(("sound", "frame", "classifier"), nets)}
    module = AVClassifier(num_classes=num_classes, width=size["width"])
    fns = attacks.ModelFns(module, porting.port_original_states(states, module))
    rng = np.random.default_rng(0)
    pixels = rng.uniform(0, 1, (size["batch"], size["image"], size["image"], 3)).astype(np.float32)
    audio = (0.8 * rng.uniform(-1, 1, (size["batch"], size["audio"]))).astype(np.float32)
    label = rng.integers(0, num_classes, size["batch"])
    jax_in = (jnp.asarray(pixels), jnp.asarray(audio), jnp.asarray(label))
    torch_in = (tr.normalize(torch.from_numpy(pixels.transpose(0, 3, 1, 2))),
                torch.from_numpy(audio[:, None]), torch.from_numpy(label))

    def torch_net(z, a):
        return nets[2](nets[1](z), nets[0](a))

    return fns, jax_in, torch_net, torch_in, nets


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--size", default="paper")
    p.add_argument("--parts", default="a,b")
    p.add_argument("--loops", default="fori,unroll", help="avjax attack loops to time ('fori' is the default)")
    args = p.parse_args()
    import torch

    from _common import competent_attack

    from avjax import attacks
    from avjax.configs.base import base_config
    from avjax.evaluation import robustness
    from tests import torch_attacks as ta
    size = SIZES[args.size]
    fns, (x, a, y), torch_net, (tz, ta_, ty), nets = setup(size)
    mean, std = torch.tensor(ta.MEAN).view(1, 3, 1, 1), torch.tensor(ta.STD).view(1, 3, 1, 1)
    lower, upper = (0 - mean) / std, (1 - mean) / std
    print(f"jax {jax.__version__}, torch {torch.__version__}; size {args.size}: {size}")

    def original_way(fn, *args_):
        for net in nets:
            net.requires_grad_(True)
        return fn(*args_)

    def ratios(med, name):
        return " | ".join(f"ratio to {k} {med[name] / med[k]:.2f}" for k in ("torch competent", "torch original way"))

    if "a" in args.parts:
        def jax_pgd(loop):
            return lambda: jax.block_until_ready(attacks.pgd(fns, x, a, y, eps_visual=0.006, eps_audio=0.006,
                                                             units="normalized", loop=loop))

        loops = args.loops.split(",")
        torch_runs = {"torch competent": lambda: competent_attack(nets, "pgd", tz, ta_, ty, 0.006, 0.006,
                                                                  lower=lower, upper=upper),
                      "torch original way": lambda: original_way(ta.pgd, torch_net, tz, ta_, ty, 0.006, 0.006)}
        med = interleaved({f"avjax {loop}": jax_pgd(loop) for loop in loops} | torch_runs, args.repeats, warmup=2)
        for k in (f"avjax {loop}" for loop in loops):
            print(f"(a) PGD-10 AV  {k:13s} {med[k]:7.2f} s | torch competent {med['torch competent']:7.2f} s | "
                  f"torch original way {med['torch original way']:7.2f} s | {ratios(med, k)}", flush=True)

    if "b" in args.parts:
        batch = {"image": x, "audio": a, "label": y}
        for loop in args.loops.split(","):
            spec = robustness.EvalSpec.from_config(base_config().eval, units="normalized", loop=loop)

            def jax_all(spec=spec):
                clean, gradients = robustness._jit_clean_gradients(fns, batch, spec)  # as evaluate_model
                for method in ("fgsm", "pgd", "mim"):
                    jax.block_until_ready(robustness.method_batch(fns, batch, spec, method, clean, gradients))

            def torch_all(competent):
                with torch.no_grad():
                    torch_net(tz, ta_)
                for eps_v, eps_a in EPS.values():
                    for method, fn in (("fgsm", ta.fgsm), ("pgd", ta.pgd), ("mim", ta.mim_standard)):
                        if competent:
                            adv = competent_attack(nets, method, tz, ta_, ty, eps_v, eps_a, lower=lower, upper=upper)
                        else:
                            adv = original_way(fn, torch_net, tz, ta_, ty, eps_v, eps_a)
                        with torch.no_grad():
                            torch_net(*adv)

            name = f"avjax {loop}"
            med = interleaved({name: jax_all, "torch competent": lambda: torch_all(True),
                               "torch original way": lambda: torch_all(False)}, args.repeats, warmup=1)
            print(f"(b) clean + FGSM+PGD+MIM x 3 settings, {name:12s} {med[name]:7.2f} s | torch competent "
                  f"{med['torch competent']:7.2f} s | torch original way {med['torch original way']:7.2f} s | "
                  f"{ratios(med, name)}", flush=True)


if __name__ == "__main__":
    main()
