"""Shared helpers: interleaved timing with medians, and the PyTorch nets of the original layout."""
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


def torch_original_av(num_classes, width, threads=2):
    """(sound, frame, classifier) PyTorch nets in the original layout, eval copies share weights."""
    import torch

    from tests import torch_reference as tr
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    sound, frame = tr.ANet(width), tr.FrameNet(tr.ResNet18(width=width))
    classifier = tr.ClassifierConcat(num_classes, in_dim=2 * sound.out_dim)
    return sound, frame, classifier
