"""Attack cost in avjax vs the original way in PyTorch eager, on the same nets (CPU, 2 threads).

    python benchmarks/attacks.py [--repeats 3] [--size paper|small]

(a) PGD-10 with both modalities attacked, batch 8 (paper: 224x224, 65535 samples).
(b) The full robustness evaluation of one batch: FGSM + PGD + MIM x {xA, xV, xAV}. avjax shares
    FGSM's gradient across settings, skips the frozen branch of single-modality attacks and runs
    each method as one compiled program; the original runs each setting separately with gradients
    through both branches (as main_attack.py).
Prints median times and the ratio avjax / torch (< 1: avjax faster). Needs the `torch` extra.
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

    return fns, jax_in, torch_net, torch_in


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--size", default="paper")
    args = p.parse_args()
    from avjax import attacks
    from avjax.configs.base import base_config
    from avjax.evaluation import robustness
    from tests import torch_attacks as ta
    size = SIZES[args.size]
    fns, (x, a, y), torch_net, (tz, ta_, ty) = setup(size)
    print(f"jax {jax.__version__}; size {args.size}: {size}")

    def jax_pgd(loop):
        return lambda: jax.block_until_ready(attacks.pgd(fns, x, a, y, eps_visual=0.006, eps_audio=0.006,
                                                         units="normalized", loop=loop))

    med = interleaved({"avjax fori": jax_pgd("fori"), "avjax unroll": jax_pgd("unroll"),
                       "torch": lambda: ta.pgd(torch_net, tz, ta_, ty, 0.006, 0.006)},
                      args.repeats, warmup=2)
    for k, v in med.items():
        print(f"(a) PGD-10 AV  {k:13s} {v:7.2f} s   ratio to torch {v / med['torch']:.2f}")

    batch = {"image": x, "audio": a, "label": y}
    for loop in ("fori", "unroll"):
        spec = robustness.EvalSpec.from_config(base_config().eval, units="normalized", loop=loop)
        jitted = jax.jit(robustness.attack_batch, static_argnames=("spec", "method"))

        def jax_all(spec=spec, jitted=jitted):
            for method in ("fgsm", "pgd", "mim"):
                jax.block_until_ready(jitted(fns, batch, spec, method))

        def torch_all():
            for eps_v, eps_a in EPS.values():
                for fn in (ta.fgsm, ta.pgd, ta.mim_standard):
                    adv = fn(torch_net, tz, ta_, ty, eps_v, eps_a)
                    with __import__("torch").no_grad():
                        torch_net(*adv)

        med = interleaved({f"avjax {loop}": jax_all, "torch": torch_all}, args.repeats, warmup=1)
        print(f"(b) FGSM+PGD+MIM x 3 settings, avjax {loop:6s} {med[f'avjax {loop}']:7.2f} s | torch "
              f"{med['torch']:7.2f} s | ratio {med[f'avjax {loop}'] / med['torch']:.2f}")


if __name__ == "__main__":
    main()
