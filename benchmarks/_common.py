"""Shared helpers: timing with medians (interleaved, or in blocks), and the PyTorch nets of the original layout."""
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def interleaved(fns: dict, repeats: int, warmup: int = 3) -> dict:
    """Run each fn `warmup` times, then `repeats` rounds in turn; -> {name: median seconds}."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def in_blocks(fns: dict, repeats: int, warmup: int = 2) -> dict:
    """Time each fn in a block of its own (`warmup` runs, then `repeats`); -> {name: median seconds}. For runs of
    milliseconds, where `interleaved` misleads: PyTorch's OpenMP threads keep spinning after a run and slowed the
    XLA run right after it by up to 1.5x (ResNet18's forward convolutions: 174 ms interleaved, 123 ms with
    OMP_WAIT_POLICY=PASSIVE; benchmarks/cpu_bounds.py)."""
    out = {}
    for name, fn in fns.items():
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        out[name] = statistics.median(times)
    return out


def train_config():
    """The train config both frameworks' benchmarked train steps use: SGD with momentum and weight decay,
    the released per-group learning rates, no defense (PyTorch's side: `train_step.torch_step`)."""
    import ml_collections
    return ml_collections.ConfigDict(dict(
        lr=dict(audio=1e-3, visual=1e-4, head=1e-3), lr_steps=(), lr_decay=0.1, momentum=0.9,
        weight_decay=1e-4, defense=dict(name="none", weight=1.0, prox_weight=1.0, con_weight=1e-4,
                                        lr_prox=0.5, lr_con=1e-4)))


def torch_original_av(num_classes, width, threads=2):
    """(sound, frame, classifier) PyTorch nets in the original layout, eval copies share weights."""
    import torch

    from tests import torch_reference as tr
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    sound, frame = tr.ANet(width), tr.FrameNet(tr.ResNet18(width=width))
    classifier = tr.ClassifierConcat(num_classes, in_dim=2 * sound.out_dim)
    return sound, frame, classifier


def competent_attack(nets, method, z, a, y, eps_v, eps_a, steps=10, lower=None, upper=None):
    """FGSM / PGD / MIM as a competent PyTorch user writes them, the baseline the benchmarks compare with
    besides the original way: parameters frozen (`requires_grad_(False)`), gradients w.r.t. the attacked
    inputs only (`torch.autograd.grad`), the unattacked modality's features computed once under `no_grad`,
    the frame clamped to its per-channel bounds in normalised space. avjax's corrected semantics (MIM with
    per-example L1 norms and the eps-ball projection, audio clamped to [-1, 1]). -> (adv frame, adv audio)."""
    import torch
    import torch.nn.functional as F

    sound, frame, classifier = nets
    for net in nets:
        net.requires_grad_(False)
    atk_v, atk_a = eps_v != 0, eps_a != 0
    with torch.no_grad():
        f_v0 = None if atk_v else frame(z)
        f_a0 = None if atk_a else sound(a)

    def grads(zz, aa):
        zz, aa = zz.detach().requires_grad_(atk_v), aa.detach().requires_grad_(atk_a)
        logits = classifier(frame(zz) if atk_v else f_v0, sound(aa) if atk_a else f_a0)
        grads = iter(torch.autograd.grad(F.cross_entropy(logits, y), [t for t in (zz, aa) if t.requires_grad]))
        return (next(grads) if atk_v else None), (next(grads) if atk_a else None)

    def l1(g):
        return g / g.abs().sum(dim=tuple(range(1, g.dim())), keepdim=True).clamp_min(1e-12)

    alpha_v, alpha_a = (eps_v, eps_a) if method == "fgsm" else (eps_v / 8, eps_a / 8)
    zz, aa = z.clone(), a.clone()
    mom_v, mom_a = torch.zeros_like(z), torch.zeros_like(a)
    for _ in range(1 if method == "fgsm" else steps):
        g_v, g_a = grads(zz, aa)
        if atk_v:
            if method == "mim":
                mom_v = l1(g_v) + mom_v
                g_v = mom_v
            zz = z + (zz + alpha_v * g_v.sign() - z).clamp(-eps_v, eps_v)
            zz = torch.max(torch.min(zz, upper), lower)
        if atk_a:
            if method == "mim":
                mom_a = l1(g_a) + mom_a
                g_a = mom_a
            aa = (a + (aa + alpha_a * g_a.sign() - a).clamp(-eps_a, eps_a)).clamp(-1, 1)
    return zz, aa
