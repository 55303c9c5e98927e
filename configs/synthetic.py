"""The embedded default: synthetic audio-visual events (no files), CPU-sized.

    python -m avjax.main --config=configs/synthetic.py --workdir=/tmp/avjax_synthetic

Trains the AV (concat), audio-only and visual-only models (width 0.25) from three seeds on a small synthetic
set (32x32 frames, 4096 samples) and writes results.md over the seeds: clean accuracies and the FGSM / PGD /
MIM robustness table as mean ± std with bootstrap intervals, and the paper's findings checked per seed
(README: the command's time and tables).
Variants (comma separated after a colon): fusion=<name|all>, modality=<av|audio|visual>,
defense=<none|minsim|maxsim|pcl|exfmem|minsim+exfmem|at|smoothing|crmt|all>, model=localization (the sound-source
localization model at 128x128 frames: heat maps clean and attacked, pointing / cIoU / AUC on the objects'
boxes), runlocal (a few steps, for smoke tests).
`defense=all` trains every row of the appendix's defense table (None, Unimodal A/V, PCL, MaxSim,
MinSim, ExFMem, MinSim+ExFMem) and evaluates them with one eps for every setting and the CE + cos attacker on the
defended models, as the released defense evaluation (with avjax's corrected attacks and coder), then the positive control
beyond the paper: `defense=at` trains None and one model adversarially trained per threat (AT (A), AT (V), AT (AV):
PGD from a random start against that setting's eps), the rows a sound evaluation must find robust.
`defense=smoothing` trains None and one model on inputs with Gaussian noise (config.smoothing), the base model of
a smoothed classifier, and certifies both models' smoothed classifiers per modality (config.certify: certified
accuracy vs L2 radius beside the L-inf attacks' table, and the base models' accuracy under L2 PGD in the same balls).
`defense=crmt` trains None and one model by CRMT (its per-modality head, margin regulariser and second step) and
reports, beside the same certificates, CRMT's own bound and how often L2 PGD breaks an example inside it.
"""
import ml_collections

from avjax.configs import base as config_base


def get_config(arg=None):
    variants = config_base.parse_arg(arg)
    config_base.check_variants(variants, allowed=config_base.SYNTHETIC_VARIANT_KEYS)
    c = config_base.base_config()
    c.seed = 0
    c.data.name = "synthetic"
    c.data.cache = True
    c.data.read_threads, c.data.read_buffer = 0, 0   # examples in memory: no read-ahead threads (3x faster)
    c.data.synthetic = config_base.synthetic_data()
    c.model.num_classes = 8
    c.model.width = 0.25
    # From scratch (no ImageNet init) on small data: one higher learning rate for every group.
    c.train.batch_size = 64
    c.train.lr = ml_collections.ConfigDict(dict(audio=0.05, visual=0.05, head=0.05))
    c.train.log_every_steps = 10
    c.train.few_steps = 100            # the synthetic events are learnt in 150 steps (the main job's schedule)
    c.train.checkpoint_min_interval_s = 30.0  # epochs of 1-3 s: a checkpoint at most every 30 s
    c.eval.batch_size = 120
    c.eval.units = "pixel"             # no ImageNet statistics in these images
    c.eval.sweep_max_examples = 120
    if variants.get("defense") or variants.get("model"):
        # The defense table and the localization model: the full synthetic set (64x64 frames, 8192
        # samples), one seed (ask for more with --config.seeds=N).
        c.train.num_epochs, c.train.lr_steps = 8, (6,)
        # Pixel-unit eps large enough to matter on this data; single : joint = 2 : 1 as in the paper.
        c.eval.eps_audio_only, c.eval.eps_visual_only, c.eval.eps_joint = 0.04, 0.04, 0.02
        c.eval.sweep_eps = (0.0, 0.01, 0.02, 0.04, 0.08)
    else:
        # The main job: three seeds of small models, so that every number comes with its spread and
        # every finding is checked per seed, in a few minutes on a CPU.
        c.seeds = 3
        # At 32x32 the object is drawn larger among less clutter (full set: scale 0.28-0.45, 6 clutter
        # shapes), so that the visual model learns enough for clean V > A to hold in every seed.
        c.data.synthetic.update(dict(image_size=32, audio_len=4096, sizes=(1600, 320, 480),
                                     object_scale=(0.35, 0.5), clutter=3))
        # 6 epochs: enough for clean AV > V > A in every seed
        c.train.num_epochs, c.train.lr_steps = 6, (5,)
        c.eval.max_examples = 240
        # Calibrated so that the paper's finding (the AV model with its audio attacked falls below the
        # clean visual-only model) holds in every seed under PGD and MIM with a wide margin; under FGSM the
        # margin is within training noise (README); single : joint = 2 : 1.
        c.eval.eps_audio_only, c.eval.eps_visual_only, c.eval.eps_joint = 0.08, 0.08, 0.04
        c.eval.sweep_eps = (0.0, 0.02, 0.04, 0.08)
    c.exfmem.size = 256                # 1024 atoms of 128-d features would be slow on a CPU
    c.exfmem.finetune.num_epochs = 4   # memory runs fine-tune from a trained run
    c.exfmem.finetune.lr_steps = (3,)
    config_base.apply_common_variants(c, variants)
    if variants.get("fusion") == "all" or variants.get("runlocal"):
        c.seeds = 1  # five AV models (or a smoke test): one seed; ask for more with --config.seeds=N
    if variants.get("defense") == "all":  # eight models on a CPU: shorter schedules, a smaller memory
        c.train.num_epochs, c.train.lr_steps = 4, (3,)
        c.exfmem.size = 128
        c.exfmem.finetune.num_epochs, c.exfmem.finetune.lr_steps = 2, ()
        c.eval.max_examples = 240
        c.eval.sweep_eps = ()
        c.embeddings.examples = 240     # how MinSim reshapes the embeddings (appendix Figs. 5/6)
        # one eps for every setting, as the released defense evaluation
        config_base.defense_protocol(c, 0.02, variant="standard", batch_size=c.eval.batch_size)
    if variants.get("defense") in ("exfmem", "minsim+exfmem", "all"):  # what the memory does, and accuracy by a
        c.exfmem.diagnostics.examples = 240
    if variants.get("defense") in ("at", "all"):  # three adversarially trained models: 3 PGD steps of eps/2 each,
        # 5 epochs from the None model's weights
        c.train.adversarial.update(dict(steps=3, step_fraction=0.5))
        c.train.adversarial.finetune.update(dict(num_epochs=5, lr_steps=(4,)))
    if variants.get("defense") in ("smoothing", "crmt"):  # the smoothed classifiers of both rows, certified per
        # modality (and CRMT's own bound)
        c.certify.update(dict(examples=120, n0=50, n=500))
    if variants.get("model") == "localization":
        # 128x128 frames and a map at frame/8 (16x16), trained with the audio-visual contrast that makes it
        # point (avjax.models.localization); the appendix's reconstruction: map_stride=32, contrast.weight=0
        c.data.synthetic.image_size = 128
        c.model.map_stride = 8
        c.train.contrast.update(dict(weight=3.0, temperature=0.07, false_negative_cos=0.85))
    if variants.get("runlocal"):
        c.data.synthetic.sizes = (16, 8, 8)
        c.data.synthetic.image_size = 32
        c.data.synthetic.audio_len = 4096
        config_base.runlocal(c, batch_size=8)
        c.eval.sweep_eps = (0.0, 0.01)
        if c.exfmem.diagnostics.examples:
            c.exfmem.diagnostics.update(dict(examples=8, blends=(0.5,)))
    return c
