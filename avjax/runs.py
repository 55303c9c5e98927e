"""The runs of a config: each run's own config, the order they train in, what they start from, and the models a
workdir holds.

`config.runs` names the models of an experiment (the main job's av / audio / visual, the defense table's None,
MinSim, ExFMem, ...), each with its modality and defense, the run it starts from (`init_from`) and the run
whose features fill its memory (`memory_from`). `run_config` applies a run's overrides, `training_order` puts
every run after those it depends on, `initial_variables` gives what a run starts from (another run's weights,
a memory built once from another run's features: `build_memory`), `defense_of` names its defenses,
`models_to_evaluate` finds the trained models of a workdir (plus `eval.models`), and `seed_config` is one
seed's config of a run over seeds.
"""
import copy
import json
import logging
import os
import time

import jax
import numpy as np

from avjax import model_dir, parallel
from avjax.models import build

log = logging.getLogger(__name__)


def run_config(config, name):
    """The config of run `name`: its modality / defense / memory / fine-tuning overrides applied."""
    run = config.runs[name]
    c = copy.deepcopy(config)
    with c.unlocked():
        c.model.modality = run.modality
        if run.get("fusion"):
            c.model.fusion = run.fusion
        if run.get("head"):
            c.model.head = run.head
        if run.get("defense"):
            c.train.defense.name = run.defense
        if run.get("memory_from"):
            c.model.memory.size = config.exfmem.size
            ft = config.exfmem.finetune
            c.train.num_epochs = ft.num_epochs or c.train.num_epochs
            c.train.lr_steps = tuple(ft.lr_steps) or c.train.lr_steps
            c.train.batch_size = ft.batch_size or c.train.batch_size
            if ft.lr:
                c.train.lr = type(c.train.lr)({k: ft.lr for k in c.train.lr})
        if run.get("adversarial"):
            c.train.adversarial.threat = run.adversarial
            ft = config.train.adversarial.finetune
            c.train.num_epochs = ft.num_epochs or c.train.num_epochs
            c.train.lr_steps = tuple(ft.lr_steps) if ft.num_epochs else c.train.lr_steps
        if run.get("noise"):
            c.train.noise.update(dict(sigma_visual=float(config.smoothing.sigma_visual),
                                      sigma_audio=float(config.smoothing.sigma_audio)))
        adversarial_threat_model(c)
    return c


def adversarial_threat_model(c):
    """Resolves `c.train.adversarial`'s eps (in place): the evaluation's eps of the threat's setting (xA:
    eps_audio_only, xV: eps_visual_only, xAV: eps_joint on each) x eps_scale, in the evaluation's units, so that
    the model is trained against the threat it is evaluated under (and the training hash covers it)."""
    adv = c.train.get("adversarial")
    if adv is None or not adv.threat:
        return
    ev = c.eval
    eps_v, eps_a = {"A": (0.0, ev.eps_audio_only), "V": (ev.eps_visual_only, 0.0),
                    "AV": (ev.eps_joint, ev.eps_joint)}.get(adv.threat, (0.0, 0.0))
    adv.eps_visual, adv.eps_audio = float(eps_v * adv.eps_scale), float(eps_a * adv.eps_scale)
    adv.units, adv.mean, adv.std = ev.units, tuple(ev.mean), tuple(ev.std)


def training_order(config) -> list[str]:
    """Run names, every run after the runs it starts from or takes its memory from."""
    order, pending = [], list(config.runs)
    while pending:
        ready = [n for n in pending if all(d in order for d in _dependencies(config, n))]
        if not ready:
            raise ValueError(f"runs {pending} depend on runs that are missing or on each other: "
                             + ", ".join(f"{n} <- {_dependencies(config, n)}" for n in pending))
        order += ready
        pending = [n for n in pending if n not in ready]
    return order


def _dependencies(config, name):
    run = config.runs[name]
    return [d for d in (run.get("init_from"), run.get("memory_from")) if d]


def defense_of(config, name) -> str:
    """'none', or the run's defenses joined by '+' (e.g. 'minsim+exfmem')."""
    if name not in config.runs:
        return "none"
    run = config.runs[name]
    parts = [run.defense] if run.get("defense") not in ("", "none", None) else []
    if run.get("memory_from"):
        parts.append("exfmem")
    if run.get("adversarial"):
        parts.append(f"at_{run.adversarial.lower()}")
    if run.get("noise"):
        parts.append("noise")
    return "+".join(parts) or "none"


def extra_models(spec) -> dict[str, str]:
    """`eval.models`: 'name=DIR,name2=DIR2' or a JSON object {"name": "DIR"} (a mapping passes through)."""
    if not spec:
        return {}
    if isinstance(spec, str) and spec.lstrip().startswith("{"):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError as e:
            raise ValueError(f"eval.models: not a JSON object ({e}): {spec!r}") from e
    if isinstance(spec, str):
        pairs = [item.partition("=") for item in spec.split(",") if item.strip()]
        bad = [name for name, eq, d in pairs if not (eq and name.strip() and d.strip())]
        if bad:
            raise ValueError(f"eval.models: write name=DIR, comma separated (got {spec!r})")
        spec = {name.strip(): d.strip() for name, _, d in pairs}
    models = {str(name): os.fspath(d) for name, d in dict(spec).items()}
    for name, d in models.items():
        if not os.path.exists(os.path.join(d, model_dir.MODEL_CONFIG)):
            raise FileNotFoundError(f"eval.models: {name}={d} is not an avjax model directory (no "
                                    f"{model_dir.MODEL_CONFIG}; convert an original checkpoint with "
                                    "python -m avjax.porting.convert SOURCE DIR)")
    return models


def models_to_evaluate(config, workdir):
    """{name: model dir}: the trained runs plus `config.eval.models` (e.g. converted originals)."""
    found = {}
    for name in config.runs:
        d = os.path.join(workdir, "runs", name, "model")
        if os.path.exists(os.path.join(d, model_dir.MODEL_CONFIG)):
            found[name] = d
    found.update(extra_models(config.eval.get("models", "")))
    wanted = tuple(config.eval.get("runs", ()))
    if wanted:
        missing = sorted(set(wanted) - set(found))
        if missing:
            raise ValueError(f"eval.runs names {missing}, which are not trained in {workdir} (found {sorted(found)})")
        found = {n: d for n, d in found.items() if n in wanted}
    if not found:
        raise FileNotFoundError(f"{workdir}: no trained model to evaluate (run the 'train' stage first)")
    return found


def seed_config(config, seed):
    """The single-seed config of one of `config.seeds` runs (its own HTML report is left to the
    aggregate, which builds one report for all seeds)."""
    c = copy.deepcopy(config)
    with c.unlocked():
        c.seed, c.seeds = seed, 1
        c.report.examples = 0
    return c


def initial_variables(config, workdir, name, sources, transforms):
    """Variables a run starts from: another run's latest weights and/or a memory built from a run."""
    from avjax.train.loop import latest_variables
    run = config.runs[name]
    variables = None
    if run.get("init_from"):
        variables = latest_variables(run_config(config, run.init_from), os.path.join(workdir, "runs", run.init_from),
                                     sources, transforms)
        log.info("run %s starts from the latest weights of run %s", name, run.init_from)
    if run.get("memory_from"):
        memory = build_memory(config, workdir, name, sources, transforms)
        if variables is None:
            raise ValueError(f"run {name}: a memory run needs `init_from` (the run to fine-tune)")
        variables = {**variables, "memory": memory}
    return variables


def memory_path(workdir, name) -> str:
    return os.path.join(workdir, "runs", name, "memory.npz")


def memory_atom_labels(workdir, name):
    """The classes of the examples run `name`'s memory atoms were stored from (None: no memory, or one built
    before labels were kept)."""
    path = memory_path(workdir, name)
    if not os.path.exists(path):
        return None
    with np.load(path) as f:
        return f["labels"] if "labels" in f.files else None


def build_memory(config, workdir, name, sources, transforms) -> dict:
    """The `memory` collection of run `name`, built (once; kept in runs/<name>/memory.npz) from the
    features of run `memory_from` (see avjax.train.memory_bank)."""
    from avjax.defenses.memory import memory_collection
    from avjax.train.loop import latest_variables
    from avjax.train.memory_bank import collect_features
    source_run = config.runs[name].memory_from
    path = memory_path(workdir, name)
    if os.path.exists(path):
        with np.load(path) as f:
            return memory_collection(f["visual"], f["audio"])
    rc = run_config(config, source_run)
    source_dir = os.path.join(workdir, "runs", source_run)
    ex = config.exfmem
    if ex.source == "eval_best":
        module, _, variables = model_dir.load_model(os.path.join(source_dir, "model"))
    else:
        module, variables = build(rc.model), latest_variables(rc, source_dir, sources, transforms)
    t0 = time.perf_counter()
    banks = collect_features(module, variables, sources, transforms, size=ex.size, source=ex.source,
                             batch_size=ex.batch_size or rc.train.batch_size, seed=config.seed,
                             mesh=parallel.make_mesh(), workers=config.data.workers)
    log.info("memory of run %s: %d x %d visual / audio features of run %s (%s) in %.1f s", name, ex.size,
             banks["visual"].shape[1], source_run, ex.source, time.perf_counter() - t0)
    if jax.process_index() == 0:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        np.savez(path + ".tmp.npz", **banks)
        os.replace(path + ".tmp.npz", path)
    return memory_collection(banks["visual"], banks["audio"])
