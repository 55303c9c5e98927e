"""Examples/s of one AV training step (SGD, CE) in avjax vs PyTorch eager on the same nets (CPU).

    python benchmarks/train_step.py [--repeats 5] [--sizes paper,small]

Paper size: 224x224 frame, 65535 samples, batch 8, width 1.0. CPU-small: 64x64, 8192 samples,
batch 64, width 0.25 (the synthetic defense table). Main: 32x32, 4096 samples, batch 64, width 0.25 (the
README's main job). Both frameworks on 2 threads; runs interleaved, medians.
Prints the examples/s of each and the ratio (>1: avjax faster). Needs the `torch` extra.
"""
import argparse

from _common import interleaved, torch_original_av, train_config

from avjax import cpu_flags

cpu_flags.apply()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

SIZES = {"paper": dict(image=224, audio=65535, batch=8, width=1.0),
         "small": dict(image=64, audio=8192, batch=64, width=0.25),
         "main": dict(image=32, audio=4096, batch=64, width=0.25)}  # the README's main job (configs/synthetic.py)


def jax_step(size, num_classes=28):
    from avjax.models import build
    from avjax.train.optimizer import make_optimizer
    from avjax.train.state import init_state
    from avjax.train.steps import make_steps
    tc = train_config()
    model = build(dict(modality="av", num_classes=num_classes, width=size["width"]))
    opt = make_optimizer(tc, 100)
    state = init_state(model, opt, jax.random.key(0), (size["image"], size["image"], 3), size["audio"],
                       num_classes)
    train_step, _ = make_steps(model, opt, tc.defense)
    step = jax.jit(train_step, donate_argnums=0)
    rng = np.random.default_rng(0)
    batch = {"image": jnp.asarray(rng.uniform(0, 1, (size["batch"], size["image"], size["image"], 3)), jnp.float32),
             "audio": jnp.asarray(rng.uniform(-1, 1, (size["batch"], size["audio"])), jnp.float32),
             "label": jnp.asarray(rng.integers(0, num_classes, size["batch"]), jnp.int32)}
    holder = {"state": state}

    def run():
        holder["state"], m = step(holder["state"], batch, jax.random.key(0))
        jax.block_until_ready(m["loss"])

    return run


def torch_step(size, num_classes=28):
    import torch
    import torch.nn.functional as F
    sound, frame, classifier = torch_original_av(num_classes, size["width"])
    nets = torch.nn.ModuleList([sound, frame, classifier]).train()
    opt = torch.optim.SGD([{"params": sound.parameters(), "lr": 1e-3},
                           {"params": classifier.parameters(), "lr": 1e-3},
                           {"params": frame.parameters(), "lr": 1e-4}], momentum=0.9, weight_decay=1e-4)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(size["batch"], 3, size["image"], size["image"], generator=g)
    a = torch.rand(size["batch"], 1, size["audio"], generator=g) * 2 - 1
    y = torch.randint(0, num_classes, (size["batch"],), generator=g)

    def run():
        opt.zero_grad()
        loss = F.cross_entropy(classifier(frame(x), sound(a)), y)
        loss.backward()
        opt.step()

    del nets
    return run


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--sizes", default="paper,small,main")
    args = p.parse_args()
    print(f"jax {jax.__version__} {jax.devices()[0].platform}; XLA_FLAGS applied: {cpu_flags.CPU_XLA_FLAGS}")
    for name in args.sizes.split(","):
        size = SIZES[name]
        med = interleaved({"avjax": jax_step(size), "torch": torch_step(size)}, args.repeats)
        ex = {k: size["batch"] / v for k, v in med.items()}
        print(f"{name:6s} batch {size['batch']:3d}: avjax {med['avjax'] * 1e3:7.1f} ms ({ex['avjax']:6.1f} ex/s)"
              f" | torch eager {med['torch'] * 1e3:7.1f} ms ({ex['torch']:6.1f} ex/s)"
              f" | avjax/torch speed ratio {ex['avjax'] / ex['torch']:.2f}x")


if __name__ == "__main__":
    main()
