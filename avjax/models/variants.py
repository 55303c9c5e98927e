"""Every model variant avjax builds, and its parameter count (10 classes), checked by a test.

Widths: 1.0 is the paper's network; 0.25 is the CPU-small variant the tests and the embedded
synthetic default use. Counts for C classes differ from these by (C - 10) * (fused width + 1).
Reference points: torchvision's ResNet18 without `fc` has 11,176,512 parameters; the paper's ANet
has 1,566,528.
"""
from avjax.models.fusion import FUSIONS

WIDTHS = (1.0, 0.25)
NUM_CLASSES = 10


def all_variants():
    """(modality, fusion or None, width) of every buildable variant."""
    out = []
    for width in WIDTHS:
        out += [("av", fusion, width) for fusion in FUSIONS]
        out += [("audio", None, width), ("visual", None, width)]
    return out


PARAM_COUNTS = {
    ("av", "sum", 1.0): 12_748_170,
    ("av", "concat", 1.0): 12_753_290,
    ("av", "film", 1.0): 13_010_826,
    ("av", "gated_sum", 1.0): 12_748_170,
    ("av", "gated_concat", 1.0): 12_753_290,
    ("audio", None, 1.0): 1_571_658,
    ("visual", None, 1.0): 11_181_642,
    ("av", "sum", 0.25): 802_410,
    ("av", "concat", 0.25): 803_690,
    ("av", "film", 0.25): 818_922,
    ("av", "gated_sum", 0.25): 802_410,
    ("av", "gated_concat", 0.25): 803_690,
    ("audio", None, 0.25): 100_314,
    ("visual", None, 0.25): 703_386,
}
