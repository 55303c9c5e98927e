"""Train-step and attack-step throughput and MFU on an accelerator, bf16 and f32, against PyTorch on the
same device; and whether the input pipeline keeps up.

    python benchmarks/accelerator.py --out DIR [--batch 128] [--parts env,ceiling,train,attack,torch,input,lax,branches]
    python benchmarks/accelerator.py --out DIR --smoke      # tiny sizes, any backend (checks the script)

Paper sizes: 224x224 frame, 65535 audio samples, width 1.0, 28 classes (AVE), the AV model with concat fusion.
- MFU is model FLOPs over time over the device's dense peak for the compute dtype (bf16: the bf16 tensor-core
  peak; f32: the TF32 peak, since XLA and cuDNN run float32 convolutions on TF32 tensor cores by default).
  Model FLOPs: 3 x forward for a train step, 2 x forward for an attack step (forward + input gradient), the
  forward counted by XLA's cost analysis of the unoptimised program. The measured bf16 matmul rate on the same
  device is printed as a second ceiling.
- PyTorch baseline: eager, channels-last, cuDNN autotuning on, TF32 allowed, bf16 through autocast; the attack is
  `_common.competent_attack` (parameters frozen, gradients w.r.t. the attacked inputs only).
- 'lax' re-times avjax with JAX's own convolution input gradient instead of avjax/models/canonical_conv.py's
  rewrite (made for XLA:CPU), to choose the rewrite per backend.
- 'input': examples/s of the layout-A train pipeline (decode + resample + augment, grain workers; its own batch,
  --input-batch) and of the same pipeline from the decoded format (avjax.data.decoded), against the bf16 train
  step's examples/s.
- 'fed': the bf16 train step fed by the decoded format's train pipeline as the trainer feeds it (grain workers,
  global_batch), examples/s per --workers: whether the input keeps up, end to end. Not in the default parts.
- 'branches': the bf16 train step of each encoder's model alone, and at twice the batch (where the time goes).
Writes DIR/results.json (every number) and DIR/results.md (the table README shows, through
tools/readme_results.py --sections Accelerator). Each part is guarded: a failure is printed and recorded, and
the parts after it still run.
"""
import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

os.environ.setdefault("AVJAX_NO_CPU_FLAGS", "1")  # the import check below tests avjax's default on its own

from _common import torch_original_av, train_config  # noqa: E402  (puts the repository on sys.path)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402

PAPER = dict(image=224, audio=65535, width=1.0, classes=28)
SMOKE = dict(image=32, audio=4096, width=0.25, classes=28)
# Dense peaks (datasheets, SXM parts): FLOP/s by compute dtype. H200 has the H100's arithmetic.
PEAKS = {"H100": {"bfloat16": 989.4e12, "float32": 494.7e12}, "H200": {"bfloat16": 989.4e12, "float32": 494.7e12},
         "A100": {"bfloat16": 312e12, "float32": 156e12}}
EPS = 0.006  # both modalities attacked, normalised units (the paper's xAV setting)


def peak_flops(device_kind, dtype):
    for name, peaks in PEAKS.items():
        if name in device_kind:
            return peaks[dtype]
    return None


def lowered_flops(lowered):
    """FLOPs of a lowered (unoptimised) program by XLA's cost analysis; None where the backend gives none."""
    cost = lowered.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    return float(cost["flops"]) if cost and "flops" in cost else None


def cpu_flops(fn, *args):
    """FLOPs of `fn(*args)` lowered for the CPU (jax 0.11 gives no cost analysis of a GPU lowering)."""
    cpu = jax.sharding.SingleDeviceSharding(jax.devices("cpu")[0])
    shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=cpu), args)
    return lowered_flops(jax.jit(fn).lower(*shapes))


def timed(run, sync, rounds=3, iters=10, warmup=2):
    """Median seconds per call of `run` over `rounds` rounds of `iters` calls, synchronised once a round."""
    for _ in range(warmup):
        run()
    sync()
    per_call = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(iters):
            run()
        sync()
        per_call.append((time.perf_counter() - t0) / iters)
    return statistics.median(per_call)


@contextlib.contextmanager
def lax_input_gradients():
    """Build avjax's nets with `lax.conv_general_dilated` (JAX's own input gradient) while inside."""
    from avjax.models import audio_net, resnet
    saved = resnet.conv_general_dilated, audio_net.conv_general_dilated
    resnet.conv_general_dilated = audio_net.conv_general_dilated = lax.conv_general_dilated
    jax.clear_caches()
    try:
        yield
    finally:
        resnet.conv_general_dilated, audio_net.conv_general_dilated = saved
        jax.clear_caches()


def inputs(size, batch, seed=0):
    rng = np.random.default_rng(seed)
    return {"image": jnp.asarray(rng.uniform(0, 1, (batch, size["image"], size["image"], 3)), jnp.float32),
            "audio": jnp.asarray(0.8 * rng.uniform(-1, 1, (batch, size["audio"])), jnp.float32),
            "label": jnp.asarray(rng.integers(0, size["classes"], batch), jnp.int32)}


def forward_flops(model, variables, batch):
    fwd = lambda v, x, a: model.apply(v, x, a, train=False)[0]  # noqa: E731
    args = (variables, batch["image"], batch["audio"])
    return lowered_flops(jax.jit(fwd).lower(*args)) or cpu_flops(fwd, *args)


def jax_train(size, batch_size, dtype, modality="av"):
    """-> dict: seconds a step, examples/s, model and XLA FLOPs of the step, compile seconds."""
    from avjax.models import build
    from avjax.train.optimizer import make_optimizer
    from avjax.train.state import init_state
    from avjax.train.steps import make_steps
    tc = train_config()
    model = build(dict(modality=modality, num_classes=size["classes"], width=size["width"], dtype=dtype))
    opt = make_optimizer(tc, 100)
    state = init_state(model, opt, jax.random.key(0), (size["image"], size["image"], 3), size["audio"],
                       size["classes"])
    batch = inputs(size, batch_size)
    fwd = forward_flops(model, state.variables(), batch)
    train_step, _ = make_steps(model, opt, tc.defense)
    lowered = jax.jit(train_step, donate_argnums=0).lower(state, batch, jax.random.key(0))
    t0 = time.perf_counter()
    step = lowered.compile()
    compile_s = time.perf_counter() - t0
    holder = {"state": state, "m": None}

    def run():
        holder["state"], holder["m"] = step(holder["state"], batch, jax.random.key(0))

    sec = timed(run, lambda: jax.block_until_ready(holder["m"]["loss"]))
    loss = float(holder["m"]["loss"])
    if not np.isfinite(loss):
        raise FloatingPointError(f"train step loss is {loss}")
    return dict(seconds=sec, examples_per_s=batch_size / sec, model_flops=3 * fwd, forward_flops=fwd,
                xla_flops=lowered_flops(lowered) or cpu_flops(train_step, state, batch, jax.random.key(0)),
                compile_s=compile_s, loss=loss)


def jax_attack(size, batch_size, dtype, steps):
    """PGD-`steps` with both modalities attacked (ModelFns, fori loop) -> dict as jax_train's."""
    from avjax import attacks
    from avjax.models import build
    from avjax.train.state import _init_variables
    model = build(dict(modality="av", num_classes=size["classes"], width=size["width"], dtype=dtype))
    batch = inputs(size, batch_size, seed=1)
    variables = _init_variables(model, jax.random.key(0), batch["image"][:1], batch["audio"][:1])
    fns = attacks.ModelFns(model, variables)
    fwd = forward_flops(model, variables, batch)
    pgd = jax.jit(lambda f, x, a, y: attacks.pgd(f, x, a, y, eps_visual=EPS, eps_audio=EPS, units="normalized",
                                                 steps=steps))
    t0 = time.perf_counter()
    out = jax.block_until_ready(pgd(fns, batch["image"], batch["audio"], batch["label"]))
    compile_s = time.perf_counter() - t0
    if not all(bool(jnp.isfinite(o).all()) for o in out):
        raise FloatingPointError("attack produced non-finite inputs")
    holder = {}

    def run():
        holder["out"] = pgd(fns, batch["image"], batch["audio"], batch["label"])

    sec = timed(run, lambda: jax.block_until_ready(holder["out"]), rounds=3, iters=3, warmup=1)
    return dict(seconds=sec, examples_per_s=batch_size / sec, attack_steps_per_s=batch_size * steps / sec,
                model_flops=2 * steps * fwd, forward_flops=fwd, compile_s=compile_s)


def torch_runs(size, batch_size, steps, dtype):
    """PyTorch on the same device: the train step and PGD, competent eager. -> {train: s, attack: s}."""
    import torch
    import torch.nn.functional as F

    from _common import competent_attack
    from tests.torch_attacks import MEAN, STD
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    mean = torch.tensor(MEAN, device=dev).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=dev).view(1, 3, 1, 1)
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    sound, frame, classifier = (n.to(dev, memory_format=torch.channels_last) if i == 1 else n.to(dev)
                                for i, n in enumerate(torch_original_av(size["classes"], size["width"])))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch_size, 3, size["image"], size["image"], generator=g).to(dev).contiguous(
        memory_format=torch.channels_last)
    a = (torch.rand(batch_size, 1, size["audio"], generator=g) * 1.6 - 0.8).to(dev)
    y = torch.randint(0, size["classes"], (batch_size,), generator=g).to(dev)
    amp = (lambda: torch.autocast(dev.type, dtype=torch.bfloat16)) if dtype == "bfloat16" else contextlib.nullcontext
    nets = [sound.train(), frame.train(), classifier.train()]
    opt = torch.optim.SGD([{"params": sound.parameters(), "lr": 1e-3}, {"params": classifier.parameters(), "lr": 1e-3},
                           {"params": frame.parameters(), "lr": 1e-4}], momentum=0.9, weight_decay=1e-4)

    def train():
        opt.zero_grad(set_to_none=True)
        with amp():
            loss = F.cross_entropy(classifier(frame((x - mean) / std), sound(a)), y)
        loss.backward()
        opt.step()

    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    out = {"train": timed(train, sync)}
    for n in nets:
        n.eval()
    z = (x - mean) / std

    def attack():
        with amp():
            competent_attack(nets, "pgd", z, a, y, EPS, EPS, steps=steps, lower=(0 - mean) / std,
                             upper=(1 - mean) / std)

    out["attack"] = timed(attack, sync, rounds=3, iters=3, warmup=1)
    return out


def input_pipeline(batch_size, workers, videos, batches):
    """Examples/s of the train pipeline from layout-A files and from their decoded format
    (benchmarks/input_pipeline.py's dataset and timing) -> {'files': {workers: rate}, 'decoded': {...}}."""
    from absl import flags
    flags.FLAGS(sys.argv[:1])
    from input_pipeline import formats, make_dataset, train_rate

    from avjax.configs.base import base_config
    from avjax.data import sources
    spec = sources.preprocess_spec(base_config().data)
    rates = {}
    with tempfile.TemporaryDirectory() as root:
        classes = make_dataset(root, videos, frames=16)
        made, _ = formats(root, classes, spec, decode_workers=max(1, min(8, os.cpu_count() or 1)))
        for name, (source, transforms) in made.items():
            rates[name] = {w: train_rate(source, transforms["train"], batch_size=batch_size, batches=batches,
                                         workers=w) for w in workers}
    return rates


def fed_train(size, batch_size, dtype, workers, videos, steps):
    """The train step fed as `avjax.train.loop` feeds it, from the decoded format: grain train pipeline (its
    workers) -> `parallel.global_batch` (uint8 pixels to float32 on the device) -> the jitted step
    -> {workers: examples/s} over `steps` steps after 3 of warm-up."""
    from absl import flags
    flags.FLAGS(sys.argv[:1])
    from input_pipeline import Repeated, formats, make_dataset

    from avjax import parallel
    from avjax.configs.base import base_config
    from avjax.data import pipeline, sources
    from avjax.models import build
    from avjax.train.optimizer import make_optimizer
    from avjax.train.state import init_state
    from avjax.train.steps import make_steps
    spec = sources.preprocess_spec(base_config().data, image_size=size["image"], audio_len=size["audio"])
    tc = train_config()
    model = build(dict(modality="av", num_classes=size["classes"], width=size["width"], dtype=dtype))
    opt = make_optimizer(tc, 100)
    train_step, _ = make_steps(model, opt, tc.defense)
    step = jax.jit(train_step, donate_argnums=0)
    mesh = parallel.make_mesh()
    rates = {}
    with tempfile.TemporaryDirectory() as root:
        classes = make_dataset(root, videos, frames=16)
        made, _ = formats(root, classes, spec, names=("decoded",), decode_workers=max(1, min(8, os.cpu_count() or 1)))
        source, transforms = made["decoded"]
        for w in workers:
            state = parallel.replicate(init_state(model, opt, jax.random.key(0), (size["image"], size["image"], 3),
                                                  size["audio"], size["classes"]), mesh)
            it = iter(pipeline.train_dataset(Repeated(source, 4096), transforms["train"], batch_size=batch_size,
                                             seed=0, workers=w))
            def run(n, state, it):
                for i in range(n):
                    state, metrics = step(state, parallel.global_batch(next(it), mesh), jax.random.key(i))
                jax.block_until_ready(metrics["loss"])
                return state

            state = run(3, state, it)   # compilation and the workers' start
            t0 = time.perf_counter()
            run(steps, state, it)
            rates[w] = steps * batch_size / (time.perf_counter() - t0)
            del it
    return rates


def import_check():
    """`import avjax` with its default XLA flags, then start JAX's backend: does the accelerator still come up?"""
    env = {k: v for k, v in os.environ.items() if k not in ("AVJAX_NO_CPU_FLAGS", "XLA_FLAGS")}
    code = "import avjax, jax, os; print(jax.default_backend(), jax.devices()[0].device_kind, os.environ.get('XLA_FLAGS'))"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return dict(returncode=proc.returncode, stdout=proc.stdout.strip(), stderr=proc.stderr.strip()[-2000:])


def markdown(r):
    """The README table: one row per (framework, step, dtype)."""
    dev, bs = r["env"]["device_kind"], r["batch"]
    lines = ["# Accelerator benchmark\n",
             f"Device: {dev} ({r['env']['platform']}); jax {r['env']['jax']}, torch {r['env'].get('torch', '-')}; "
             f"{r['size']['image']}x{r['size']['image']} frame, {r['size']['audio']} samples, width {r['size']['width']}, "
             f"batch {bs}, AV model with concat fusion; "
             f"PGD-{r['steps']} with both modalities attacked. MFU: model FLOPs (3x forward a train step, 2x forward "
             f"an attack step) over time over the dense datasheet peak of the compute dtype (bf16: "
             f"{_tf(peak_flops(dev, 'bfloat16'))} TFLOP/s; f32 runs on TF32 tensor cores: "
             f"{_tf(peak_flops(dev, 'float32'))} TFLOP/s). Measured bf16 matmul (8192^3) on this device: "
             f"{_tf(r.get('ceiling', {}).get('bf16_matmul_flops'))} TFLOP/s. Speed vs PyTorch: PyTorch's time over "
             f"avjax's (> 1: avjax faster).\n",
             "## Accelerator\n",
             "| step | dtype | implementation | ms / step | examples/s | TFLOP/s | MFU | speed vs PyTorch |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for key, row in r["rows"].items():
        if "error" in row:
            continue
        lines.append(f"| {row['step']} | {row['dtype']} | {row['impl']} | {row['seconds'] * 1e3:.1f} | "
                     f"{row['examples_per_s']:.0f} | {_tf(row.get('tflops_per_s'))} | "
                     f"{_pct(row.get('mfu'))} | {row.get('speedup_vs_torch', '-')} |")
    if "input" in r and "rates" in r["input"]:
        rates = ", ".join(f"{w} workers {v:.0f}" for w, v in r["input"]["rates"].items())
        lines.append(f"\nInput pipeline (layout A: jpg frames + 11 kHz wav, decode, resample, augment; "
                     f"{r['env'].get('cpus')} CPU cores): {rates} examples/s, against the bf16 train step's "
                     f"{r['input'].get('train_examples_per_s', float('nan')):.0f} examples/s.")
        if "decoded_rates" in r["input"]:
            rates = ", ".join(f"{w} workers {v:.0f}" for w, v in r["input"]["decoded_rates"].items())
            lines.append(f"From the decoded format (avjax.data.decoded, the same examples): {rates} examples/s.")
    if "fed" in r and "rates" in r["fed"]:
        rates = ", ".join(f"{w} workers {v:.0f}" for w, v in r["fed"]["rates"].items())
        lines.append(f"\nThe bf16 train step fed by the decoded format's pipeline, as the trainer feeds it (batch "
                     f"{r['batch']}): {rates} examples/s, against "
                     f"{r['fed'].get('train_examples_per_s', float('nan')):.0f} for the step on inputs already on "
                     "the device.")
    return "\n".join(lines) + "\n"


def _tf(x):
    return "-" if x is None else f"{x / 1e12:.0f}"


def _pct(x):
    return "-" if x is None else f"{100 * x:.0f} %"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--parts", default="env,ceiling,train,attack,torch,input,lax")
    p.add_argument("--workers", default="8,15")
    p.add_argument("--videos", type=int, default=64, help="layout-A videos (16 frames each) for 'input'")
    p.add_argument("--input-batch", type=int, default=32)
    p.add_argument("--smoke", action="store_true", help="tiny sizes on any backend: checks the script itself")
    args = p.parse_args()
    size = SMOKE if args.smoke else PAPER
    parts = args.parts.split(",")
    os.makedirs(args.out, exist_ok=True)
    dev = jax.devices()[0]
    r = {"batch": args.batch, "steps": args.steps, "size": size, "rows": {},
         "env": {"device_kind": dev.device_kind, "platform": dev.platform, "jax": jax.__version__,
                 "python": platform.python_version(), "cpus": os.cpu_count()}}

    def save():
        with open(os.path.join(args.out, "results.json"), "w") as f:
            json.dump(r, f, indent=1, default=str)
        with open(os.path.join(args.out, "results.md"), "w") as f:
            f.write(markdown(r))

    def part(name, fn):
        t0 = time.perf_counter()
        try:
            out = fn()
            print(f"[{name}] {time.perf_counter() - t0:.0f} s: {out}", flush=True)
            return out
        except Exception as e:  # a broken part must not cost the others their device time
            traceback.print_exc()
            print(f"[{name}] FAILED after {time.perf_counter() - t0:.0f} s: {e!r}", flush=True)
            return {"error": repr(e)}
        finally:
            save()

    def add_row(key, step, dtype, impl, res):
        row = dict(step=step, dtype=dtype, impl=impl, **res)
        if "error" not in res:
            row["tflops_per_s"] = res["model_flops"] / res["seconds"]
            peak = peak_flops(dev.device_kind, dtype)
            row["mfu"] = row["tflops_per_s"] / peak if peak else None
        r["rows"][key] = row

    if "env" in parts:
        try:
            import flax
            r["env"]["flax"] = flax.__version__
            import torch
            r["env"]["torch"] = torch.__version__
        except ImportError:
            pass
        r["import_check"] = part("import avjax with its default flags", import_check)
    if "ceiling" in parts:
        def ceiling():
            n = 1024 if args.smoke else 8192
            key = jax.random.key(0)
            out = {}
            for name, dt in (("bf16_matmul_flops", jnp.bfloat16), ("f32_matmul_flops", jnp.float32)):
                x = jax.random.normal(key, (n, n), dt)
                mm = jax.jit(lambda x: x @ x)
                holder = {}
                sec = timed(lambda: holder.__setitem__("y", mm(x)), lambda: jax.block_until_ready(holder["y"]),
                            iters=20)
                out[name] = 2 * n ** 3 / sec
            return out
        r["ceiling"] = part("matmul ceiling", ceiling)
    dtypes = {"bfloat16": "bfloat16", "float32": ""}
    if "train" in parts:
        for dt in ("bfloat16", "float32"):
            add_row(f"train_{dt}", "train", dt, "avjax",
                    part(f"avjax train {dt}", lambda dt=dt: jax_train(size, args.batch, dtypes[dt])))
    if "attack" in parts:
        for dt in ("bfloat16", "float32"):
            add_row(f"attack_{dt}", f"PGD-{args.steps} xAV", dt, "avjax",
                    part(f"avjax attack {dt}", lambda dt=dt: jax_attack(size, args.batch, dtypes[dt], args.steps)))
    if "torch" in parts and (dev.platform == "gpu" or args.smoke):
        for dt in ("bfloat16", "float32"):
            res = part(f"torch {dt}", lambda dt=dt: torch_runs(size, args.batch, args.steps, dt))
            for step in ("train", "attack"):
                if "error" in res:
                    continue
                mine = r["rows"].get(f"{step}_{dt}", {})
                flops = mine.get("model_flops")
                row = {"seconds": res[step], "examples_per_s": args.batch / res[step],
                       "model_flops": flops if flops else float("nan")}
                add_row(f"torch_{step}_{dt}", mine.get("step", step), dt, "PyTorch eager", row)
                if "seconds" in mine:
                    mine["speedup_vs_torch"] = f"{res[step] / mine['seconds']:.2f}x"
    if "input" in parts:
        def inp():
            rates = input_pipeline(args.input_batch, [int(w) for w in args.workers.split(",")], args.videos,
                                   batches=4 if args.smoke else 12)
            return {"rates": rates["files"], "decoded_rates": rates["decoded"],
                    "train_examples_per_s": r["rows"].get("train_bfloat16", {}).get("examples_per_s", float("nan"))}
        r["input"] = part("input pipeline", inp)
    if "fed" in parts:
        def fed():
            rates = fed_train(size, args.batch, "bfloat16", [int(w) for w in args.workers.split(",")], args.videos,
                              steps=3 if args.smoke else 50)
            return {"rates": rates,
                    "train_examples_per_s": r["rows"].get("train_bfloat16", {}).get("examples_per_s", float("nan"))}
        r["fed"] = part("train step fed by the decoded format", fed)
    if "lax" in parts:
        with lax_input_gradients():
            add_row("train_bfloat16_lax", "train", "bfloat16", "avjax, lax input gradient",
                    part("avjax train bfloat16, lax input gradient", lambda: jax_train(size, args.batch, "bfloat16")))
            add_row("attack_bfloat16_lax", f"PGD-{args.steps} xAV", "bfloat16", "avjax, lax input gradient",
                    part("avjax attack bfloat16, lax input gradient",
                         lambda: jax_attack(size, args.batch, "bfloat16", args.steps)))
    if "branches" in parts:  # where the bf16 train step's time goes: each encoder alone, and a larger batch
        for modality in ("visual", "audio"):
            add_row(f"train_bfloat16_{modality}", "train", "bfloat16", f"avjax, {modality}-only model",
                    part(f"avjax train bfloat16 {modality}",
                         lambda m=modality: jax_train(size, args.batch, "bfloat16", modality=m)))
        add_row("train_bfloat16_2x", f"train, batch {2 * args.batch}", "bfloat16", "avjax",
                part("avjax train bfloat16 2x batch", lambda: jax_train(size, 2 * args.batch, "bfloat16")))
    save()
    print(open(os.path.join(args.out, "results.md")).read())


if __name__ == "__main__":
    main()
