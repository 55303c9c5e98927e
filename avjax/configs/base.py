"""The config skeleton every configs/*.py starts from, variant parsing, and `build_spec`.

Every constant a researcher may change has its one default here (or in the dataset config that
overrides it); the frozen dataclasses the code runs on (`SyntheticSpec`, `PreprocessSpec`, `EvalSpec`)
have no defaults of their own and are filled from config sections by `build_spec`.
"""
import dataclasses

import ml_collections

from avjax.common import IMAGENET_MEAN, IMAGENET_STD
from avjax.errors import ConfigError


def parse_arg(arg: str | None) -> dict:
    """'fusion=film,runlocal,defense=minsim' -> {'fusion': 'film', 'runlocal': True, 'defense': 'minsim'}."""
    out = {}
    for item in filter(None, (arg or "").split(",")):
        key, sep, value = item.partition("=")
        out[key.strip()] = value.strip() if sep else True
    return out


VARIANT_KEYS = ("fusion", "modality", "defense", "runlocal", "recipe", "protocol", "model")
# recipe= and protocol=: the paper's recipes and attack study, for the paper configs only
SYNTHETIC_VARIANT_KEYS = tuple(k for k in VARIANT_KEYS if k not in ("recipe", "protocol"))


def check_variants(variants: dict, allowed=VARIANT_KEYS):
    unknown = sorted(set(variants) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown config variant(s) {unknown}; allowed: {list(allowed)}")


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 1234
    # Train and evaluate every run this many times (seeds seed, seed + 1, ...; each in workdir/seed_<seed>/)
    # and report mean ± std and bootstrap intervals over the seeds (avjax.evaluation.seeds).
    c.seeds = 1
    c.aggregate = ml_collections.ConfigDict(dict(bootstrap=1000, confidence=0.95, seed=0))
    # JAX's persistent compilation cache (avjax.compiled): programs compiled once are loaded by later seeds,
    # resumed runs and later experiments. dir '' turns it off; JAX_COMPILATION_CACHE_DIR, if set, wins.
    c.compilation_cache = ml_collections.ConfigDict(dict(dir="~/.cache/avjax/xla", min_compile_time_s=0.5,
                                                         max_size_gb=2.0))
    c.stages = ("train", "evaluate")

    c.data = ml_collections.ConfigDict()
    c.data.name = "synthetic"
    c.data.workers = 0
    # training read-ahead (grain's ReadOptions): threads and buffered examples; 0 / 0 for data in memory;
    # -1: the source's choice (layout-A files 16 / 500 for decoding, the decoded format 2 / 32)
    c.data.read_threads = -1
    c.data.read_buffer = -1
    # train-time jitter of every dataset: horizontal flip, the original's volume jitter U[lo, hi)
    c.data.augment = ml_collections.ConfigDict(dict(flip_prob=0.5, volume=(0.5, 1.5)))
    # real-media preprocessing (layout A / TFDS): the released code's sizes and rates (docs/data.md)
    c.data.preprocess = ml_collections.ConfigDict(dict(
        image_size=224, train_resize_factor=1.1, audio_len=65535, audio_rate=11025, fps=8,
        margin_seconds=3.0))

    c.model = ml_collections.ConfigDict(dict(
        modality="av", fusion="concat", num_classes=8, width=1.0, visual_pool="avg",
        dtype="",  # compute dtype: '' follows inputs/params (float32); 'bfloat16' on accelerators
        # 'localization': the sound-source localization model (avjax.models.localization; variant
        # model=localization), whose heat maps are evaluated clean and under attack
        architecture="classifier",
        attention="mean", temperature=0.1,   # localization: pooling of the map, see avjax.models.localization
        map_stride=32,                       # localization: the map's stride, 32 (ResNet18's), 16 or 8
        # the AV classifier's last layer: 'linear' (the paper's) or 'crmt' (CRMT's per-modality head on the
        # concatenated features, avjax.models.crmt_head; set per run by `run(..., head='crmt')`)
        head="linear"))
    # ExFMem: the external feature memory of a defended model (size 0: none). Runs with `memory_from`
    # set get size = exfmem.size; see avjax.defenses.
    c.model.memory = ml_collections.ConfigDict(dict(
        size=0, lam=0.1, blend=0.5,
        solver="fista", variant="standard",  # 'ista' + 'original': the released loop (batch-global stop)
        step_visual=0.0, step_audio=0.0,    # ISTA step per modality; 0: 1/L (the optimal safe step)
        tol=-1.0,                           # < 0: the solver default (1e-6 relative; released loop 8e-4)
        max_iter=2000, block=25,
        gradient="default"))                # attack-time surrogate: see avjax.defenses.memory.GRADIENTS
    # How a memory is built from a trained run (the `memory_from` of a run).
    c.exfmem = ml_collections.ConfigDict(dict(
        size=1024,                          # K atoms per modality (the released code: 1024; MUSIC 288)
        source="train_mode",                # 'train_mode': the run's latest weights, train-mode BN,
                                            # augmented, shuffled (as the released dump); 'eval_best':
                                            # eval-mode features of its best weights
        batch_size=0,                       # 0: the training batch size
        # the fine-tuning of a run with a memory (0 / () / 0.0: the config's own training settings;
        # lr > 0 sets every learning rate)
        finetune=ml_collections.ConfigDict(dict(num_epochs=0, lr_steps=(), batch_size=0, lr=0.0)),
        # what the memory does to clean and attacked features, and accuracy by blend weight a
        # (avjax.evaluation.memory_diagnostics), on the first `examples` test examples (0: off); the attack
        # is rerun at each a, so this costs about one table row per blend
        diagnostics=ml_collections.ConfigDict(dict(examples=0, method="pgd",
                                                   blends=(0.0, 0.25, 0.5, 0.75, 1.0)))))

    c.train = ml_collections.ConfigDict()
    c.train.batch_size = 48
    c.train.num_epochs = 30
    c.train.lr = ml_collections.ConfigDict(dict(audio=1e-3, visual=1e-4, head=1e-3))
    c.train.lr_steps = (10, 20)
    c.train.lr_decay = 0.1
    # A small dataset gives few optimizer steps per epoch: with min_steps > 0 a run that would take fewer steps
    # trains for more epochs (lr_steps scaled with them). Runs under few_steps steps, or validated on fewer
    # than few_val examples, are warned about in the log with what to change.
    c.train.min_steps = 0
    c.train.few_steps = 300
    c.train.few_val = 50
    c.train.momentum = 0.9
    c.train.weight_decay = 1e-4
    c.train.log_every_steps = 20
    c.train.checkpoint_every_steps = 0  # 0: at epoch ends (and on SIGTERM) only
    # A kill loses at most this much training; the last step, every `checkpoint_every_steps` and SIGTERM
    # always save. Epochs of seconds (the synthetic main job) otherwise spent a fifth of their time in
    # orbax (~0.6 s a save on a 2-core CPU).
    c.train.checkpoint_min_interval_s = 0.0  # skip epoch-end checkpoints younger than this (s); 0: every epoch
    c.train.visual_init = ""            # torchvision resnet18 .pth/.safetensors for ImageNet init; 'none': random
    c.train.visual_init_required = False  # the paper configs: refuse '' (no visual_init given)
    # The localization model's audio-visual contrast (avjax.train.losses.localization_contrast); weight 0: off.
    # false_negative_cos: pairs of other classes whose frames or sounds are this alike are no negatives (1: all are)
    c.train.contrast = ml_collections.ConfigDict(dict(weight=0.0, temperature=0.1, false_negative_cos=1.0))
    c.train.defense = ml_collections.ConfigDict(dict(
        name="none", weight=1.0,                      # MinSim / MaxSim: w * mean cos(f_v, f_a)
        rho=2.0,                                      # CRMT: rho x its margin regulariser (released CRMT_JT)
        prox_weight=1.0, con_weight=1e-4,             # PCL loss weights
        lr_prox=0.5, lr_con=1e-4))                    # PCL centre learning rates (official code)
    # Adversarial training (avjax.train.adversarial), set per run by `run(..., adversarial=...)`: threat '' (off),
    # 'A', 'V' or 'AV'; each attacked input trained at eps_scale x the evaluation's eps of that setting (eval.eps_*,
    # in eval.units), resolved into eps_visual / eps_audio by avjax.runs.run_config.
    c.train.adversarial = ml_collections.ConfigDict(dict(
        threat="",                  # '' (off), 'A', 'V' or 'AV': the inputs attacked in training
        method="pgd",               # 'pgd': `steps` steps from a random start; 'fast': one step (Wong et al. 2020)
        steps=7,                    # PGD steps per training batch
        step_fraction=0.25,         # PGD step = eps * step_fraction
        fast_step_fraction=1.25,    # 'fast': its one step = eps * fast_step_fraction
        eps_scale=1.0,              # training eps = eps_scale x the evaluation's eps of the threat's setting
        bn="train",                 # BatchNorm as the attack sees the model: 'train' (batch statistics) | 'eval'
        clean_weight=0.0,           # weight of the clean loss beside the adversarial one (0: Madry's objective)
        # the AT rows start from the None run's latest weights and train this schedule (0 / (): train's own)
        finetune=ml_collections.ConfigDict(dict(num_epochs=0, lr_steps=()))))

    # Gaussian noise augmentation (the training of randomized smoothing, Cohen et al. 2019; `avjax.certify`), set
    # per run by `run(..., noise=True)` from `c.smoothing`: every training input gets N(0, sigma^2) noise, on pixels
    # in [0, 1] and on waveform samples, unclamped (as a smoothed classifier's base model sees it); 0: none.
    c.train.noise = ml_collections.ConfigDict(dict(sigma_visual=0.0, sigma_audio=0.0))
    # the noise of the runs trained with noise (`defense=smoothing`) and of the smoothed classifiers certified
    c.smoothing = ml_collections.ConfigDict(dict(sigma_visual=0.25, sigma_audio=0.05))
    # CRMT's second step (avjax.train.crmt), after a CRMT run's training: the Lipschitz estimate L[m, c] (max over
    # `lipschitz_examples` training examples, 0: all) then `epochs` epochs (0: train.num_epochs // 3 - 1, as the
    # released code) of SGD on the fusion weights a alone, lr = train.lr.head x lr_scale, to maximise the bound.
    c.crmt = ml_collections.ConfigDict(dict(lipschitz_examples=0, epochs=0, lr_scale=0.03, momentum=0.9,
                                            weight_decay=1e-2, batch_size=0))
    # Certified accuracy of each AV model's smoothed classifiers (avjax.evaluation.certified) on the first `examples`
    # test examples (0: none): noise on the audio, the frame or both (`modes`), CERTIFY with `n0` selection and `n`
    # estimation draws at level `alpha`, `draws_per_call` noisy copies of a batch per model call; the curves'
    # radii in units of sigma (x sigma_audio, x sigma_visual, whitened for 'joint'). Beside each curve, the base
    # model's accuracy under L2 PGD in the same ball (`attack_steps` steps of radius x `attack_step_fraction`; 0: none).
    c.certify = ml_collections.ConfigDict(dict(examples=0, modes=("audio", "visual", "joint"), n0=100, n=1000,
                                               alpha=0.001, draws_per_call=25, seed=0,
                                               radii=(0.0, 0.25, 0.5, 1.0, 1.5, 2.0),
                                               attack_steps=20, attack_step_fraction=0.25))

    # Models trained by the 'train' stage, each in workdir/runs/<name> (see `run`).
    c.runs = ml_collections.ConfigDict({"av": run("av"), "audio": run("audio"), "visual": run("visual")})
    c.rows = ()          # run names in table order (() = the baseline, then the others)
    c.baseline = "av"   # the row RI is measured against

    c.eval = ml_collections.ConfigDict()
    c.eval.batch_size = 16
    c.eval.units = "normalized"        # the paper's eps units ('pixel' for new work)
    c.eval.mean = IMAGENET_MEAN
    c.eval.std = IMAGENET_STD
    c.eval.methods = ("fgsm", "pgd", "mim")
    c.eval.variant = "standard"        # MIM: 'original' reproduces the released code's flaws
    c.eval.loss = "ce"                 # 'ce+cos': the original's defense-evaluation attacker
    c.eval.defended_loss = ""          # the attacker's loss on defended models ('' = eval.loss)
    c.eval.cos_weight = 1.0
    c.eval.steps = 10
    c.eval.step_fraction = 1.0 / 8.0   # PGD / MIM step = eps * step_fraction
    c.eval.momentum = 1.0              # MIM decay factor mu
    c.eval.loop = "auto"               # attack loop: 'auto' = 'fori' (lax.fori_loop), or 'unroll'
    # (eps_visual, eps_audio) of the single-audio, single-visual and joint settings (main_attack.py)
    c.eval.eps_audio_only = 0.012
    c.eval.eps_visual_only = 0.012
    c.eval.eps_joint = 0.006
    c.eval.sweep_eps = ()              # eps values (x1e-3 in the figures) for accuracy-vs-eps curves
    c.eval.sweep_method = "pgd"
    c.eval.sweep_max_examples = 0      # 0: the whole evaluated set
    c.eval.max_examples = 0            # 0: the whole test split
    c.eval.models = ""                 # more model dirs to evaluate: 'name=DIR,name2=DIR2' or JSON {"name": "DIR"}
    c.eval.runs = ()                   # evaluate only these runs (() = every trained run)
    # results.md's positive control (the adversarially trained rows against the baseline, each in its own setting)
    c.eval.control_gain = 10.0         # it holds when an AT row gains >= this many points under every attack ...
    c.eval.control_clean_cost = 15.0   # ... losing <= this many points of clean accuracy
    c.eval.clean_tolerance = 2.0       # the defense findings: a defense keeps clean accuracy within this many points
    c.eval.study = "corrected"         # named in results.md: 'corrected' (avjax's attacks) | 'paper' | 'attack_script'
    # 'table': the paper's FGSM / PGD / MIM table (eval.methods); 'standard' adds the standard protocol
    # (APGD-CE, APGD-T, Square, adaptive attacks on defenses, worst case per example, gradient-masking
    # checklist) and writes leaderboard.json. See avjax.evaluation.protocol.
    c.eval.protocol = "table"
    c.eval.standard = ml_collections.ConfigDict(dict(
        apgd_steps=100, apgd_restarts=1, target_classes=9,     # AutoAttack's standard version
        square_queries=5000, square_p_init=0.8,
        fab=True,                                              # FAB-L-inf with apgd_steps steps
        fab_targeted=True,       # FAB-T over target_classes targets (one gradient a step), else untargeted (K a step)
        adaptive=("unrolled", "bpda_identity", "bpda_ridge"),  # memory gradients of adaptive APGD-CE
        unroll=1,                                              # scan unroll of APGD's step loop
        checklist=True, large_eps_factor=10.0, max_large_eps_accuracy=5.0,
        swap_candidates=8,                                     # batch-mates in the unbounded check of xA / xV
        tolerance=1.0,                 # accuracy points a check may miss by (and always by one example)
        settings_run=("xA", "xV", "xAV"),                      # the settings the protocol attacks
        seed=0,                                                # random starts and Square's draws
        max_examples=0))                                       # 0: eval.max_examples
    # workdir/report/index.html after the evaluation: tables, figures and a gallery of `examples` test
    # examples (0: no report) under `method` in the three settings, for `model` ('' = the baseline AV model)
    c.report = ml_collections.ConfigDict(dict(examples=8, method="pgd", model=""))
    # localization models: heat-map grids of `figure_examples` test examples per attack (figures/), and
    # pointing / cIoU / AUC on the sounding objects' boxes where the data has them (0: eval.max_examples)
    c.localization = ml_collections.ConfigDict(dict(figure_examples=4, max_examples=0))
    # AV models: audio / visual embeddings of `examples` test examples, clean and attacked on that modality by
    # `method` (k-NN accuracy, silhouette, t-SNE figure; 0: not computed). See avjax.evaluation.embeddings.
    c.embeddings = ml_collections.ConfigDict(dict(examples=0, method="pgd", k=5, perplexity=30.0, seed=0))
    return c


def run(modality="av", defense="", *, label="", init_from="", memory_from="", fusion="", adversarial="",
        noise=False, head=""):
    """One trained model: its modality, training defense (''/'none', 'minsim', 'maxsim', 'pcl'),
    the run whose *latest* weights initialise it (`init_from`), the run whose features build its
    external memory (`memory_from`; the run is then fine-tuned with the memory), its fusion
    ('' = config.model.fusion), the threat it is adversarially trained against ('', 'A', 'V', 'AV';
    config.train.adversarial), whether it trains on inputs with Gaussian noise (config.smoothing) and its last
    layer ('' = config.model.head). `label` names its table row."""
    return ml_collections.ConfigDict(dict(modality=modality, defense=defense, label=label, init_from=init_from,
                                          memory_from=memory_from, fusion=fusion, adversarial=adversarial,
                                          noise=noise, head=head))


# The five fusions of the paper (appendix A.4), in its table's order, with their row labels
# (tests keep this equal to avjax.models.FUSIONS).
FUSION_LABELS = {"sum": "Sum", "concat": "Concat", "film": "FiLM", "gated_sum": "Gated-Sum",
                 "gated_concat": "Gated-Concat"}


def fusion_runs() -> dict:
    """`fusion=all`: one AV run per fusion (the paper's fusion table), plus the unimodal runs."""
    runs = {f"av_{name}": run("av", label=label, fusion=name) for name, label in FUSION_LABELS.items()}
    runs.update(audio=run("audio", label="Unimodal A"), visual=run("visual", label="Unimodal V"))
    return runs


DEFENSES = ("none", "minsim", "maxsim", "pcl", "exfmem", "minsim+exfmem", "at", "smoothing", "crmt", "all")


def defense_runs() -> dict:
    """Every row of the appendix's defense tables, as runs (name -> run), in table order."""
    return {
        "av": run("av", label="None"),
        "audio": run("audio", label="Unimodal A"),
        "visual": run("visual", label="Unimodal V"),
        "pcl": run("av", "pcl", label="PCL", init_from="av"),      # the official PCL code starts from CE
        "maxsim": run("av", "maxsim", label="MaxSim"),
        "minsim": run("av", "minsim", label="MinSim"),
        "exfmem": run("av", label="ExFMem", init_from="av", memory_from="av"),
        "minsim_exfmem": run("av", "minsim", label="MinSim+ExFMem", init_from="minsim", memory_from="minsim"),
    }


# Adversarial training per threat model (beyond the paper): the positive control of the defense table, a defense
# known to work, so that a weak defense can be told from a weak evaluation.
AT_LABELS = {"A": "AT (A)", "V": "AT (V)", "AV": "AT (AV)"}


def adversarial_runs() -> dict:
    """`defense=at`: one AV run adversarially trained per threat model (name -> run), in table order."""
    return {f"at_{threat.lower()}": run("av", label=label, adversarial=threat, init_from="av")
            for threat, label in AT_LABELS.items()}


def noise_runs() -> dict:
    """`defense=smoothing` (beyond the paper): an AV run trained on inputs with Gaussian noise (config.smoothing),
    the base model of a smoothed classifier (`avjax.certify`)."""
    return {"smoothing": run("av", label="Gaussian noise", noise=True)}


def crmt_runs() -> dict:
    """`defense=crmt` (beyond the paper): an AV run trained by CRMT (its head, margin regulariser and second step;
    avjax.defenses.crmt), whose own bound is reported beside the smoothing certificates."""
    return {"crmt": run("av", "crmt", label="CRMT", head="crmt")}


def apply_common_variants(c, variants):
    """fusion= / modality= / defense= select what the single-run variants train (`fusion=all`: every
    fusion, one run each, rows of one table; the concat run is the RI baseline); model=localization
    trains the sound-source localization model alone."""
    model = variants.get("model", "classifier")
    if model not in ("classifier", "localization"):
        raise ConfigError(f"unknown model {model!r}; choose 'classifier' or 'localization'")
    if model == "localization":
        if set(variants) & {"fusion", "modality", "defense"}:
            raise ValueError("model=localization trains one AV localization model; it does not combine "
                             "with fusion=, modality= or defense=")
        c.model.architecture = "localization"
        c.runs = ml_collections.ConfigDict({"av": run("av", label="AV localization")})
        c.baseline = "av"
        return c
    if variants.get("fusion") == "all":
        if variants.get("defense", "none") != "none" or "modality" in variants:
            raise ValueError("fusion=all trains the five AV fusions; it does not combine with defense= or modality=")
        runs = fusion_runs()
        c.runs = ml_collections.ConfigDict(runs)
        c.rows = tuple(runs)     # table order (a ConfigDict iterates its keys sorted)
        c.baseline = "av_concat"
        return c
    if "fusion" in variants:
        c.model.fusion = variants["fusion"]
    if "modality" in variants:
        c.runs = ml_collections.ConfigDict({variants["modality"]: run(variants["modality"])})
        c.baseline = variants["modality"]
    name = variants.get("defense", "none")
    if name not in DEFENSES:
        raise ConfigError(f"unknown defense {name!r}; choose one of {DEFENSES}")
    rows = {**defense_runs(), **adversarial_runs()}
    at = list(adversarial_runs())
    wanted = {"none": [], "minsim": ["minsim"], "maxsim": ["maxsim"], "pcl": ["pcl"], "exfmem": ["exfmem"],
              "minsim+exfmem": ["minsim", "minsim_exfmem"], "at": ["av", *at], "smoothing": [], "crmt": [],
              "all": list(rows)}[name]
    for key in wanted:
        c.runs[key] = rows[key]
    if name == "at":  # None and the three AT rows only: the positive control on its own
        c.runs = ml_collections.ConfigDict({key: rows[key] for key in ("av", *at)})
        c.rows = ("av", *at)
    if name == "smoothing":  # None and the run trained with noise
        c.runs = ml_collections.ConfigDict({"av": rows["av"], **noise_runs()})
        c.rows = ("av", *noise_runs())
    if name == "crmt":  # None and the CRMT run
        c.runs = ml_collections.ConfigDict({"av": rows["av"], **crmt_runs()})
        c.rows = ("av", *crmt_runs())
    if name == "all":
        c.rows = tuple(rows)
        c.eval.defended_loss = "ce+cos"  # the released defense evaluation: CE + cos on defended models
    return c


def runlocal(c, batch_size):
    """The smoke-test sizes every config's `runlocal` variant shares: tiny model, one epoch, two attack
    steps, a memory of one batch."""
    c.model.width = 0.125
    c.train.batch_size = c.eval.batch_size = batch_size
    c.train.num_epochs = 1
    c.train.min_steps = 0      # a smoke run stays a few steps, whatever its config asks of a real one
    # every epoch: the resume tests kill a smoke run after its first checkpoint
    c.train.checkpoint_min_interval_s = 0.0
    c.eval.steps = 2
    c.exfmem.size = batch_size
    c.exfmem.finetune.update(dict(num_epochs=1, lr_steps=(), batch_size=batch_size))
    c.train.adversarial.finetune.update(dict(num_epochs=1, lr_steps=()))
    c.model.memory.max_iter = 50
    c.report.examples = 0      # smoke tests skip the HTML report and the embeddings
    c.embeddings.examples = 0  # (tests/evaluation/test_html_report.py builds both)
    c.certify.update(dict(examples=min(c.certify.examples, batch_size), n0=4, n=16, draws_per_call=8,
                          attack_steps=min(c.certify.attack_steps, 2)))


def runlocal_media(c):
    """`runlocal` of the configs that read prepared media (paper configs, folder): tiny frames and
    waveforms, no worker processes, two examples, a random visual trunk on purpose."""
    c.data.preprocess.image_size = 32
    c.data.preprocess.audio_len = 4095
    c.data.workers = 0
    runlocal(c, batch_size=2)
    c.eval.max_examples = 2
    c.train.visual_init = "none"


def defense_protocol(c, eps, *, variant, batch_size):
    """The released code's defense evaluation: one eps for every setting, its MIM variant, its batch."""
    c.eval.eps_audio_only = c.eval.eps_visual_only = c.eval.eps_joint = eps
    c.eval.variant = variant
    c.eval.batch_size = batch_size


def synthetic_data() -> ml_collections.ConfigDict:
    """`config.data.synthetic` of the embedded default dataset (see avjax.data.synthetic)."""
    return ml_collections.ConfigDict(dict(
        num_classes=8, visual_groups=(0, 0, 1, 1, 2, 3, 4, 5), audio_groups=(0, 1, 0, 1, 2, 2, 3, 3),
        image_size=64, audio_len=8192, sample_rate=11025, sizes=(2400, 480, 480), seed=0,
        object_scale=(0.28, 0.45), distractor_prob=0.5, clutter=6, pixel_noise=0.06,
        audio_snr_db=(0.0, 10.0), distractor_sound_prob=0.5, distractor_sound_gain=0.35))


def _frozen(value):
    """Config values as hashable, immutable Python values (lists and tuples become tuples)."""
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


def build_spec(cls, *sections, **overrides):
    """The dataclass `cls` filled field by field from config sections (later ones win) and overrides.

    Keys that are not fields of `cls` are ignored (a section may serve several specs); a field that no
    section provides is an error naming it, so a spec can never fall back to a hidden default.
    """
    values = {}
    for section in sections:
        values.update(section.to_dict() if hasattr(section, "to_dict") else dict(section))
    values.update(overrides)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {unknown}")
    missing = [n for n in names if n not in values]
    if missing:
        raise ValueError(f"{cls.__name__}: the config lacks {missing}")
    return cls(**{n: _frozen(values[n]) for n in names})
