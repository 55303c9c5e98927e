"""Shared config skeleton and variant parsing for configs/*.py (every researcher-facing constant)."""
import ml_collections

from avjax.models.resnet import IMAGENET_MEAN, IMAGENET_STD


def parse_arg(arg: str | None) -> dict:
    """'fusion=film,runlocal,defense=minsim' -> {'fusion': 'film', 'runlocal': True, 'defense': 'minsim'}."""
    out = {}
    for item in filter(None, (arg or "").split(",")):
        key, sep, value = item.partition("=")
        out[key.strip()] = value.strip() if sep else True
    return out


VARIANT_KEYS = ("fusion", "modality", "defense", "runlocal", "recipe")


def check_variants(variants: dict, allowed=VARIANT_KEYS):
    unknown = sorted(set(variants) - set(allowed))
    if unknown:
        raise ValueError(f"unknown config variant(s) {unknown}; allowed: {list(allowed)}")


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 1234
    c.stages = ("train", "evaluate")

    c.data = ml_collections.ConfigDict()
    c.data.name = "synthetic"
    c.data.workers = 0
    c.data.augment = ml_collections.ConfigDict(dict(flip_prob=0.5, volume=(0.5, 1.5)))

    c.model = ml_collections.ConfigDict(dict(
        modality="av", fusion="concat", num_classes=8, width=1.0, visual_pool="avg",
        dtype="")) # compute dtype: '' follows inputs/params (float32); 'bfloat16' on accelerators

    c.train = ml_collections.ConfigDict()
    c.train.batch_size = 48
    c.train.num_epochs = 30
    c.train.lr = ml_collections.ConfigDict(dict(audio=1e-3, visual=1e-4, head=1e-3))
    c.train.lr_steps = (10, 20)
    c.train.lr_decay = 0.1
    c.train.momentum = 0.9
    c.train.weight_decay = 1e-4
    c.train.log_every_steps = 20
    c.train.checkpoint_every_steps = 0  # 0: at epoch ends (and on SIGTERM) only
    c.train.visual_init = ""            # torchvision resnet18 .pth/.safetensors for ImageNet init
    c.train.defense = ml_collections.ConfigDict(dict(
        name="none", weight=1.0,                      # MinSim / MaxSim: w * mean cos(f_v, f_a)
        prox_weight=1.0, con_weight=1e-4,             # PCL loss weights
        lr_prox=0.5, lr_con=1e-4))                    # PCL centre learning rates (official code)

    # Models trained by the 'train' stage, each in workdir/runs/<name>: overrides of model / defense.
    c.runs = ml_collections.ConfigDict({
        "av": ml_collections.ConfigDict(dict(modality="av", defense="")),
        "audio": ml_collections.ConfigDict(dict(modality="audio", defense="")),
        "visual": ml_collections.ConfigDict(dict(modality="visual", defense="")),
    })
    c.baseline = "av"   # the row RI is measured against

    c.eval = ml_collections.ConfigDict()
    c.eval.batch_size = 16
    c.eval.units = "normalized"        # the paper's eps units ('pixel' for new work)
    c.eval.mean = IMAGENET_MEAN
    c.eval.std = IMAGENET_STD
    c.eval.methods = ("fgsm", "pgd", "mim")
    c.eval.variant = "standard"        # MIM: 'original' reproduces the released code's flaws
    c.eval.loss = "ce"                 # 'ce+cos': the original's defense-evaluation attacker
    c.eval.cos_weight = 1.0
    c.eval.steps = 10
    c.eval.loop = "auto"               # attack loop: unroll on CPU, fori_loop elsewhere
    # (eps_visual, eps_audio) of the single-audio, single-visual and joint settings (main_attack.py)
    c.eval.eps_audio_only = 0.012
    c.eval.eps_visual_only = 0.012
    c.eval.eps_joint = 0.006
    c.eval.sweep_eps = ()              # eps values (x1e-3 in the figures) for accuracy-vs-eps curves
    c.eval.sweep_method = "pgd"
    c.eval.sweep_max_examples = 0      # 0: the whole evaluated set
    c.eval.max_examples = 0            # 0: the whole test split
    return c


def apply_common_variants(c, variants):
    """fusion= / modality= / defense= select what the single-run variants train."""
    if "fusion" in variants:
        c.model.fusion = variants["fusion"]
    if "modality" in variants:
        c.runs = ml_collections.ConfigDict({variants["modality"]: ml_collections.ConfigDict(
            dict(modality=variants["modality"], defense=""))})
        c.baseline = variants["modality"]
    if "defense" in variants and variants["defense"] != "none":
        name = variants["defense"]
        c.runs[name] = ml_collections.ConfigDict(dict(modality="av", defense=name))
    return c
