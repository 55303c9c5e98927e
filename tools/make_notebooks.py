"""notebooks/*.ipynb from their cells here: one source of truth, outputs never stored.

    python tools/make_notebooks.py           # rewrite notebooks/
    python tools/make_notebooks.py --check   # exit 1 when a notebook differs from this file (tests run it)

Notebooks stay thin: they import avjax and call its API; logic they need belongs in avjax. `GITHUB` is the
repository the Colab badges and the install cell point at (AVJAX_REPO overrides the clone address).
"""
import os
import sys

import nbformat as nbf

GITHUB = "avjax/avjax"
OUT_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "notebooks")
BOOKS = {}

def badge(name):
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"(https://colab.research.google.com/github/{GITHUB}/blob/main/notebooks/{name}.ipynb)")

INSTALL = '''# Install: in Colab, clone avjax and install it; where avjax is checked out already (this folder's
# parent holds configs/), nothing is installed. AVJAX_NOTEBOOK_SIZE=tiny (set by the tests) runs
# every cell at smoke-test sizes.
import os, subprocess, sys
REPO_URL = os.environ.get("AVJAX_REPO", "https://github.com/%s")
ROOT = os.path.abspath("..") if os.path.isfile("../configs/synthetic.py") else os.path.abspath("avjax")
if not os.path.isfile(os.path.join(ROOT, "configs", "synthetic.py")):
    subprocess.check_call(["git", "clone", "-q", "--depth", "1", REPO_URL, ROOT])
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "-e", ROOT])
sys.path.insert(0, ROOT)
os.chdir(ROOT)
TINY = os.environ.get("AVJAX_NOTEBOOK_SIZE") == "tiny"
WORK = os.environ.get("AVJAX_NOTEBOOK_WORKDIR", os.path.join(ROOT, "workdir"))  # where runs are written
print("avjax at", ROOT, "| sizes:", "tiny" if TINY else "full", "| runs under", WORK)''' % GITHUB

def nb(name, cells):
    book = nbf.v4.new_notebook()
    book.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                     "language_info": {"name": "python"}, "colab": {"provenance": []}}
    out = []
    for kind, text in cells:
        out.append(nbf.v4.new_markdown_cell(text) if kind == "md" else nbf.v4.new_code_cell(text))
    book.cells = out
    for i, c in enumerate(book.cells):
        c["id"] = f"{name.split('_')[0]}-{i:02d}"
    BOOKS[name] = nbf.writes(book) + "\n"

nb("01_quickstart", [
 ("md", f"""# avjax quick start: train and attack an audio-visual classifier

{badge('01_quickstart')}

Train the audio-visual model (ResNet18 frames + 1-D conv waveform, concat fusion) and the audio-only and
visual-only baselines on the embedded synthetic dataset (no files needed), attack audio, frame or both with
FGSM, PGD and MIM, and read the robustness table and the accuracy-vs-ε curve. This is exactly what
`python -m avjax.main --config=configs/synthetic.py --workdir=workdir/synthetic` does: three seeds, the tables
as mean ± std with bootstrap intervals and the paper's findings checked per seed (about 10 minutes on a 2-core
CPU). The tiny version below trains one seed for a few steps."""),
 ("code", INSTALL),
 ("md", """## The config
Every constant lives in the config (`docs/config.md` lists them all). `experiment.load_config` reads a config
file with variants and dotted overrides, exactly like `--config=configs/synthetic.py:runlocal --config.eval.steps=5`."""),
 ("code", '''from avjax import experiment

config = experiment.load_config("configs/synthetic.py", "runlocal" if TINY else "")
workdir = os.path.join(WORK, "nb01_tiny" if TINY else "nb01")
print("runs:", list(config.runs), "| epochs:", config.train.num_epochs, "| eval eps (A, V, joint):",
      config.eval.eps_audio_only, config.eval.eps_visual_only, config.eval.eps_joint, config.eval.units)'''),
 ("md", """## Train and evaluate
Training resumes from `workdir` if it was interrupted; evaluation keeps every finished batch, so running the cell
again continues where it stopped."""),
 ("code", '''out = experiment.run(config, workdir)
runs = out["seeds"] if "seeds" in out else {config.seed: out}  # config.seeds > 1: one run per seed
for seed, run in runs.items():
    for name, summary in run["train"].items():
        print(f"seed {seed} {name:8s} test accuracy {summary['test_accuracy']:.3f} (best epoch {summary['best_epoch']})")'''),
 ("md", """## The robustness table
Clean accuracy, accuracy under attack on audio only (✗A), frame only (✗V) and both (✗AV), their average and the
robustness improvement RI against the AV row; then the modality attribution of joint successes."""),
 ("code", '''from IPython.display import Image, Markdown, display

display(Markdown(open(os.path.join(workdir, "results.md")).read()))'''),
 ("code", '''figure = os.path.join(workdir, "figures", f"accuracy_vs_eps_{config.eval.sweep_method}.png")
display(Image(filename=figure))'''),
 ("md", """Every number above is also in `results.json`: over several seeds the summary per cell (and each seed's own
`seed_<seed>/results.json`); for one seed one record per (model, attack, ε, setting), with the seed, config
hash and package versions."""),
 ("code", '''import json

results = json.load(open(os.path.join(workdir, "results.json")))
if "summary" in results:  # several seeds: mean, std and the bootstrap interval per cell
    for model, methods in results["summary"].items():
        c = methods["pgd"]["xAV"]
        print(f"{model:8s} PGD on audio and frame: {c['mean']:.1f} ± {c['std']:.1f} % [{c['lo']:.1f}, {c['hi']:.1f}]")
else:
    records = results["records"]
    for r in records:
        if r["attack"] == "pgd" and r["setting"] == "xAV" and not r.get("sweep"):
            print(f"{r['model']:8s} PGD on audio and frame: {r['accuracy']:.1f} % of {r['n']} examples")
    assert records, "no results"'''),
])

nb("02_attacks", [
 ("md", f"""# Attacks: every attack and setting on one model, attribution, accuracy vs ε, the adversarial audio

{badge('02_attacks')}

One audio-visual model, attacked through the library API (`avjax.attacks`): FGSM, PGD, MIM, APGD-CE and the
black-box Square attack, on audio only, the frame only, and both. Then which modality the joint attack needed
(attribution), accuracy vs ε (`avjax.evaluation.robustness`), and the adversarial waveform to listen to."""),
 ("code", INSTALL),
 ("code", '''import jax
import numpy as np
from avjax import attacks, experiment, model_dir
from avjax.data import pipeline, sources

config = experiment.load_config("configs/synthetic.py", "runlocal,modality=av" if TINY else "modality=av", seeds=1)
workdir = os.path.join(WORK, "nb02_tiny" if TINY else "nb02")
experiment.run(config, workdir) if not os.path.exists(os.path.join(workdir, "runs", "av", "model", "model.json")) \\
    else print("trained before:", workdir)
module, model_config, variables = model_dir.load_model(os.path.join(workdir, "runs", "av", "model"))
fns = attacks.ModelFns(module, variables)   # the model as the attacks see it: (image, audio) -> logits'''),
 ("md", """## A batch of test examples
Images are pixels in [0, 1] `(B, H, W, 3)`, waveforms in [-1, 1] `(B, L)`."""),
 ("code", '''srcs, transforms = sources.build(config.data)
n = 8 if TINY else 64
batch = next(iter(pipeline.eval_dataset(srcs["test"], transforms["eval"], batch_size=n)))
image, audio, label = batch["image"], batch["audio"], batch["label"]
classes = list(config.data.get("classes", ())) or [str(c) for c in range(config.model.num_classes)]
print(image.shape, audio.shape, "clean accuracy", float(np.mean(np.argmax(fns(image, audio)[0], -1) == label)))'''),
 ("md", """## Every attack in every setting
ε in pixel units (the synthetic config's `eval.units`); the joint setting uses half the single-modality ε, as the paper."""),
 ("code", '''eps_single, eps_joint = config.eval.eps_audio_only, config.eval.eps_joint
settings = {"xA": (0.0, eps_single), "xV": (eps_single, 0.0), "xAV": (eps_joint, eps_joint)}
steps = config.eval.steps
key = jax.random.key(0)
runs = {
    "fgsm": lambda v, a: attacks.fgsm(fns, image, audio, label, eps_visual=v, eps_audio=a, units="pixel"),
    "pgd": lambda v, a: attacks.pgd(fns, image, audio, label, eps_visual=v, eps_audio=a, units="pixel", steps=steps),
    "mim": lambda v, a: attacks.mim(fns, image, audio, label, eps_visual=v, eps_audio=a, units="pixel", steps=steps),
    "apgd-ce": lambda v, a: attacks.apgd(fns, image, audio, label, eps_visual=v, eps_audio=a, units="pixel",
                                         key=key, steps=5 if TINY else 100),
    "square": lambda v, a: attacks.square(fns, image, audio, label, eps_visual=v, eps_audio=a, units="pixel",
                                          key=key, queries=20 if TINY else 1000)[0],
}
correct, adversarial = {}, {}
for attack, run in runs.items():
    for setting, (eps_v, eps_a) in settings.items():
        adv_image, adv_audio = run(eps_v, eps_a)
        assert np.max(np.abs(adv_image - image)) <= eps_v + 1e-6 and np.max(np.abs(adv_audio - audio)) <= eps_a + 1e-6
        correct[attack, setting] = np.argmax(fns(adv_image, adv_audio)[0], -1) == label
        adversarial[attack, setting] = (adv_image, adv_audio)
print(f"{'attack':8s}" + "".join(f"{s:>8s}" for s in settings))
for attack in runs:
    print(f"{attack:8s}" + "".join(f"{100 * correct[attack, s].mean():7.1f}%" for s in settings))'''),
 ("md", """## Attribution: which modality did the joint attack need?
Of the clean-correct examples the joint PGD attack fools, the share that neither single-modality attack fools
(`joint_only_share`), and those that an audio-only or frame-only attack already fools."""),
 ("code", '''from avjax.evaluation import robustness

clean = np.argmax(fns(image, audio)[0], -1) == label
summary = robustness.summarize({"clean": clean, **{s: correct["pgd", s] for s in settings}})
print({k: round(v, 1) if isinstance(v, float) else v for k, v in summary.items()})'''),
 ("md", "## Accuracy vs ε (one compiled program for all ε values)"),
 ("code", '''from avjax.viz.curves import plot_sweep
from IPython.display import Image, display

spec = robustness.EvalSpec.from_config(config.eval, methods=(), sweep_eps=(0.0, 0.01, 0.02, 0.04, 0.08))
sweep = robustness.evaluate_model(fns, srcs["test"], transforms["eval"], spec, batch_size=config.eval.batch_size,
                                  max_examples=n)["sweep"]
sweep["modality"] = "av"
figure = os.path.join(workdir, "sweep.png")
plot_sweep(figure, {"av": sweep}, "av", f"PGD accuracy vs eps ({sweep['n']} examples)")
display(Image(filename=figure))'''),
 ("md", "## Listen: the clean and the adversarial waveform (PGD on audio only)"),
 ("code", '''from IPython.display import Audio

rate = config.data.synthetic.sample_rate
adv_audio = adversarial["pgd", "xA"][1]
snr = 10 * np.log10(np.sum(audio[0] ** 2) / np.sum((adv_audio[0] - audio[0]) ** 2))
print(f"label {classes[label[0]]}: audio SNR of the perturbation {snr:.1f} dB")
display(Audio(audio[0], rate=rate, normalize=False), Audio(adv_audio[0], rate=rate, normalize=False))'''),
])

nb("03_defenses", [
 ("md", f"""# Defenses: the appendix's defense table and the adaptive checklist

{badge('03_defenses')}

Train the defended models (MinSim, MaxSim, PCL, the external feature memory ExFMem, MinSim+ExFMem) and the
undefended and unimodal baselines, evaluate them as the released code does, then with the standard protocol:
APGD-CE, APGD-T, Square and the adaptive attacks on the memory's sparse coder, the worst case per example, and
the gradient-masking checklist (more steps, large ε, black-box vs white-box, transfer). Full size is
`python -m avjax.main --config=configs/synthetic.py:defense=all --workdir=... --config.eval.protocol=standard`
(about an hour on a 2-core CPU); the tiny size (the tests) trains MinSim and the baselines only, and
evaluates the undefended model and MinSim."""),
 ("code", INSTALL),
 ("code", '''from avjax import experiment

if TINY:
    config = experiment.load_config("configs/synthetic.py", "runlocal,defense=minsim", **{
        "eval.protocol": "standard", "eval.runs": ("av", "minsim"), "eval.standard.apgd_steps": 3,
        "eval.standard.target_classes": 1, "eval.standard.square_queries": 5,
        "eval.standard.settings_run": ("xAV",), "eval.max_examples": 8})
else:
    config = experiment.load_config("configs/synthetic.py", "defense=all", **{"eval.protocol": "standard"})
workdir = os.path.join(WORK, "nb03_tiny" if TINY else "nb03")
print("rows:", {name: run.label or name for name, run in config.runs.items()})'''),
 ("code", '''out = experiment.run(config, workdir)'''),
 ("md", "## The defense table (one eps, the CE + cos attacker) and the standard protocol with its checklist"),
 ("code", '''from IPython.display import Markdown, display

display(Markdown(open(os.path.join(workdir, "results.md")).read()))'''),
 ("md", """A defense whose robustness holds only against the gradient attacks it was tuned on fails a checklist line
(e.g. the black-box Square attack beating white-box APGD is a sign of masked gradients). The same content is
in `leaderboard.json`, one entry per model."""),
 ("code", '''import json

board = json.load(open(os.path.join(workdir, "leaderboard.json")))
for entry in board["entries"]:
    failed = [c for c in entry["checklist"] if c["passed"] is False]
    print(f"{entry['label']:14s} clean {entry['clean_accuracy']:5.1f} %  robust (worst case) "
          f"{entry['robust_accuracy']}  failed checks: {len(failed)}")'''),
])


nb("04_original_checkpoints", [
 ("md", f"""# The original code's checkpoints and torchvision's ResNet18 in avjax, and back

{badge('04_original_checkpoints')}

Port the three files the released PyTorch code saves per checkpoint (`sound_best.pth`, `frame_best.pth`,
`classifier_best.pth`: from your runs of the released code, or shared with you) and torchvision's ImageNet
ResNet18, evaluate the ported model under attack with avjax, and write an avjax model back in the original
layout. Porting reads `.pth` files without running pickled code (`torch.load(weights_only=True)`, or avjax's
own allow-list reader without PyTorch) and refuses any missing, extra, mis-shaped or non-finite tensor.

Set `ORIGINAL` to the folder holding the three files and `RESNET18` to torchvision's file
(`https://download.pytorch.org/models/resnet18-f37072fd.pth`). Where they are absent (and in the tests), the
notebook writes **stand-ins** in the same layouts (random weights, so their accuracies mean nothing) and says so."""),
 ("code", INSTALL),
 ("code", '''import importlib.util
import jax
import jax.numpy as jnp
import numpy as np
from avjax import porting
from avjax.models import AVClassifier

ORIGINAL = os.environ.get("AVJAX_ORIGINAL_CHECKPOINT", os.path.join(WORK, "original_checkpoint"))
RESNET18 = os.environ.get("AVJAX_TORCHVISION_RESNET18", os.path.join(WORK, "resnet18-f37072fd.pth"))
try:
    have_original = bool(porting.find_original_files(ORIGINAL))
except porting.CheckpointError as e:
    have_original = False
    print("no original checkpoint:", e)
if not have_original:   # stand-ins: 8 classes, as the synthetic data the model is evaluated on below
    stand_in = AVClassifier(num_classes=8, fusion="concat", visual_pool="avg")
    weights = jax.jit(stand_in.init)(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), jnp.zeros((1, 4096)))
    ext = ".pth" if importlib.util.find_spec("torch") else ".safetensors"
    print("STAND-INS (random weights):", porting.save_original_checkpoint(stand_in, weights, ORIGINAL, ext=ext))
    if not os.path.exists(RESNET18):
        RESNET18 = os.path.splitext(RESNET18)[0] + ".safetensors"
        trunk = {c: weights[c]["visual_net"] for c in ("params", "batch_stats")}
        porting.save_state_dict(porting.resnet18_state_dict(trunk), RESNET18)'''),
 ("md", """## torchvision's ResNet18 -> the visual trunk
Every key is consumed except the ImageNet `fc`, dropped on purpose. Training from ImageNet weights is one flag:
`--config.train.visual_init=RESNET18` (the paper configs refuse to train without it unless told `none`)."""),
 ("code", '''trunk = porting.resnet18_from_torchvision(RESNET18)
count = sum(int(np.size(x)) for x in jax.tree.leaves(trunk["params"]))
print(f"ResNet18 trunk: {count:,} parameters from {RESNET18}")'''),
 ("md", """## The original checkpoint -> an avjax model
The module is what the released code computes: concat fusion on average-pooled ResNet18 features (torchvision's
avgpool kept) and ANet on the waveform. Its logits equal the PyTorch ones (the golden tests check this to 1e-4
in float32 and 1e-9 in float64)."""),
 ("code", '''module, variables = porting.load_original_checkpoint(ORIGINAL)
image = jax.random.uniform(jax.random.key(1), (2, 64, 64, 3))
audio = jax.random.uniform(jax.random.key(2), (2, 8192), minval=-1, maxval=1)
logits, _ = jax.jit(module.apply)(variables, image, audio)
print(module.num_classes, "classes; logits", logits.shape)'''),
 ("md", """## Evaluate it under attack
`python -m avjax.porting.convert ORIGINAL OUT` (here its function) writes an avjax model directory; any
config evaluates it with `--config.eval.models='{"original": "OUT"}'` and `--config.stages=evaluate`. With a
real AVE checkpoint use `configs/ave.py` and its prepared data (`--config.data.root`); the stand-in is evaluated
on the synthetic data."""),
 ("code", '''from avjax import experiment
from avjax.porting import convert
from IPython.display import Markdown, display

converted = os.path.join(WORK, "nb04_original_model")
if not os.path.exists(converted):
    print(convert.convert(ORIGINAL, converted))
config = experiment.load_config("configs/synthetic.py", "runlocal" if TINY else "", **{
    "stages": ("evaluate",), "eval.models": f"original={converted}", "eval.runs": ("original",),
    "model.num_classes": module.num_classes, "seeds": 1})
if TINY:
    config.eval.max_examples = 8
    config.eval.sweep_eps = ()
workdir = os.path.join(WORK, "nb04_tiny" if TINY else "nb04")
experiment.run(config, workdir)
display(Markdown(open(os.path.join(workdir, "results.md")).read()))'''),
 ("md", """## And back: an avjax model in the original layout
`porting.save_original_checkpoint` writes `sound_/frame_/classifier_<tag>` (`.pth` with PyTorch installed, or
`.safetensors`) that the released code loads with `load_state_dict(strict=True)`: a model trained or defended in
avjax can be checked with the original scripts. Porting it again gives the same weights, bit for bit."""),
 ("code", '''back = os.path.join(WORK, "nb04_back")
paths = porting.save_original_checkpoint(module, variables, back, tag="avjax")
print(paths)
_, again = porting.load_original_checkpoint(back, tag="avjax")
same = jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), again, variables)
assert all(jax.tree.leaves(same)), "round trip changed a weight"
print("round trip: every weight identical")'''),
])

nb("05_own_videos", [
 ("md", f"""# Your own videos: prepare a folder, train, attack

{badge('05_own_videos')}

A folder of videos sorted by class, `VIDEOS/<Class>/<ID>.mp4`, becomes the prepared layout the paper's data
uses (frames at 8 fps as JPEG, 11025 Hz mono wav, split CSVs) with `avjax.data.prepare`, and
`configs/folder.py` trains and attacks it with one flag, `--config.data.root`. Classes and their number
come from the folder, and a seeded, stratified validation share is carved from train when there is none.

Set `VIDEOS` to your folder. Where it is absent (and in the tests), the notebook writes the synthetic events as
real mp4 files (`python -m avjax.data.synthetic_videos`) and uses them as a stand-in."""),
 ("code", INSTALL),
 ("code", '''from avjax.data import prepare
from avjax.data.synthetic_videos import write_video_tree

VIDEOS = os.environ.get("AVJAX_VIDEOS", os.path.join(WORK, "my_videos"))
PREPARED = os.path.join(WORK, "nb05_tiny_prepared" if TINY else "nb05_prepared")
if not os.path.isdir(VIDEOS):
    from avjax.configs import base
    from avjax.data import sources
    data = base.base_config().data
    data.synthetic = base.synthetic_data()
    spec = sources.synthetic_spec(data, num_classes=4, visual_groups=(0, 0, 1, 1), audio_groups=(0, 1, 0, 1))
    written = write_video_tree(VIDEOS, spec, per_class=3 if TINY else 40, seconds=1.0 if TINY else 4.0,
                               class_names=["violin", "drum", "flute", "bell"])
    print(f"STAND-IN: {sum(map(len, written.values()))} synthetic videos under {VIDEOS}")
print(sorted(os.listdir(VIDEOS)))'''),
 ("md", """## Prepare
The same as `python -m avjax.data.prepare --videos VIDEOS --out PREPARED`: parallel, resumable (finished videos
are skipped), and a video that cannot be decoded is an error naming it (or, with `on_error="skip"`, dropped and
reported), never silent zeros. The count table closes the run."""),
 ("code", '''items = prepare.items_from_class_tree(VIDEOS, seed=0)
rows, report, counts = prepare.prepare(items, PREPARED, workers=2, progress=False)
print(prepare.count_table(counts))'''),
 ("md", """## Train and attack with one flag
`python -m avjax.main --config=configs/folder.py --workdir=WORK --config.data.root=PREPARED`. With your own
data, add `--config.train.visual_init=<torchvision resnet18 .pth>` for an ImageNet-initialised frame network
(see notebook 04); the released recipe (30 epochs at 224², batch 48) wants a GPU."""),
 ("code", '''from avjax import experiment
from IPython.display import Markdown, display

config = experiment.load_config("configs/folder.py", "runlocal,modality=av" if TINY else "",
                                **{"data.root": PREPARED})
if TINY:
    config.eval.max_examples = 4
    config.eval.sweep_eps = ()
workdir = os.path.join(WORK, "nb05_tiny" if TINY else "nb05")
out = experiment.run(config, workdir)
display(Markdown(open(os.path.join(workdir, "results.md")).read()))'''),
])


def main(argv=None):
    check = "--check" in (argv if argv is not None else sys.argv[1:])
    stale = []
    for name, text in BOOKS.items():
        path = os.path.join(OUT_DIR, f"{name}.ipynb")
        current = open(path).read() if os.path.exists(path) else ""
        if current != text:
            stale.append(path)
            if not check:
                with open(path, "w") as f:
                    f.write(text)
    if check and stale:
        print("stale notebooks (run python tools/make_notebooks.py):", *stale, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
