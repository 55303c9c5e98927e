"""The training loop: resumable, data parallel, validated every epoch, best-on-validation kept.

    summary, best_variables = train_and_evaluate(config, workdir, sources, transforms)

As the original: validation accuracy after every epoch selects the best checkpoint, which is then
evaluated on the test split. Checkpoints (state + best + data-iterator state) are written at every
epoch end (unless the last one is younger than `checkpoint_min_interval_s`), every
`checkpoint_every_steps`, at the last step and on SIGTERM; a run started again with the same command
resumes from the latest one and finishes with exactly the metrics of an uninterrupted run.
A non-finite loss stops the run with an error before anything is saved, so the last checkpoint on
disk is always a good one.
"""
import contextlib
import copy
import dataclasses
import functools
import hashlib
import json
import logging
import os
import signal
import time

import jax
import numpy as np
from tqdm import tqdm

from avjax import parallel
from avjax.checkpoint import RunCheckpoints, local_value
from avjax.data import pipeline
from avjax.data.sources import first_example
from avjax.errors import ConfigError
from avjax.models import build
from avjax.train import adversarial
from avjax.train.optimizer import make_optimizer
from avjax.train.state import init_state
from avjax.train.steps import make_steps

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    pass


class Preempted(Exception):
    """Raised after the SIGTERM checkpoint has been written."""


@contextlib.contextmanager
def _sigterm_flag():
    flag = {"set": False}
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum, frame):
        del signum, frame
        flag["set"] = True

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: no preemption handling
        previous = None
    try:
        yield flag
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def parameter_overview(params) -> str:
    rows = []
    for name, sub in params.items():
        n = sum(x.size for x in jax.tree.leaves(sub))
        rows.append(f"  {name:14s} {n:>12,d}")
    total = sum(x.size for x in jax.tree.leaves(params))
    return "\n".join(["parameters:"] + rows + [f"  {'total':14s} {total:>12,d}"])


def training_config_hash(config) -> str:
    """Hash of everything that determines a training trajectory (not evaluation settings)."""
    keys = ("seed", "data", "model", "train")
    tree = {k: json.loads(config[k].to_json()) if hasattr(config[k], "to_json") else config[k]
            for k in keys}
    for field in ("workers", "read_threads", "read_buffer", "decoded_dir"):
        tree["data"].pop(field, None)
    if tree["data"].get("source") == "decoded":   # the same examples as the files (tests/data/test_decoded.py)
        tree["data"]["source"] = "files"
    if tree["model"].get("map_stride") == 32:  # the default map: hashes of earlier configs stay valid
        tree["model"].pop("map_stride")
    if tree["model"].get("head") == "linear":  # the default head, likewise
        tree["model"].pop("head")
    if tree["train"].get("defense", {}).get("name") != "crmt":   # rho acts in CRMT runs only
        tree["train"].get("defense", {}).pop("rho", None)
    tree["train"] = _trajectory_fields(tree["train"])
    blob = json.dumps(tree, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


_NOT_TRAJECTORY = ("log_every_steps", "checkpoint_every_steps", "checkpoint_min_interval_s", "few_steps", "few_val")


def _trajectory_fields(train_cfg: dict) -> dict:
    """The training config (as a dict) without the fields that do not change the trajectory (`min_steps` acts
    through the epochs and decays it sets, which are hashed; left out, workdirs of earlier configs resume; so are
    `adversarial` when it attacks nothing, `contrast` when its weight is 0 and `noise` when it adds none)."""
    dropped = _NOT_TRAJECTORY + ("min_steps",)
    if not any((train_cfg.get("noise") or {}).values()):
        dropped += ("noise",)
    if not (train_cfg.get("adversarial") or {}).get("threat"):
        dropped += ("adversarial",)
    if not (train_cfg.get("contrast") or {}).get("weight"):
        dropped += ("contrast",)
    return {k: v for k, v in train_cfg.items() if k not in dropped}


def _all_finite(tree) -> bool:
    """Whether every value of `tree` is finite, checked on the host (one process's copy of replicated
    arrays): a jitted check compiled one more program per model (~1 s on a 2-core CPU) to read a few MB."""
    return all(bool(np.isfinite(local_value(x)).all()) for x in jax.tree.leaves(tree))


def _to_host(tree):
    return jax.tree.map(lambda x: np.asarray(jax.device_get(x)), tree)


@dataclasses.dataclass(frozen=True)
class RunSetup:
    """Everything a run is built from: model, optimizer, its jitted steps, mesh, batch sizes and the
    initial state."""

    model: object
    optimizer: object
    train_step: object   # jitted (state, batch, key) -> (state, metrics), the state donated
    eval_step: object    # jitted (state, batch) -> sums
    mesh: object
    local_batch: int
    steps_per_epoch: int
    total_steps: int
    state: object   # initial TrainState on the host (the template checkpoints are restored into)


_STEP_PROGRAMS: dict = {}
_STEP_PROGRAMS_KEPT = 4


def step_programs(model, train_cfg, steps_per_epoch, mesh):
    """-> (optimizer, jitted train step, jitted eval step) of a run. Runs whose model, training config,
    epoch length and mesh are equal (the seeds of one job, a run resumed in the same process) get the
    same objects, so JAX's in-memory cache serves their programs: without it each seed traced, lowered
    and loaded them again (~50 s per seed of the default job on a 2-core CPU)."""
    key = (model, json.dumps(_trajectory_fields(json.loads(train_cfg.to_json())), sort_keys=True),
           steps_per_epoch, mesh)
    if key not in _STEP_PROGRAMS:
        if len(_STEP_PROGRAMS) >= _STEP_PROGRAMS_KEPT:
            _STEP_PROGRAMS.clear()
        optimizer = make_optimizer(train_cfg, steps_per_epoch)
        adversarial_cfg = train_cfg.get("adversarial")
        if adversarial_cfg is not None:
            adversarial.check(adversarial_cfg)
        train_step, eval_step = make_steps(model, optimizer, train_cfg.defense, adversarial_cfg,
                                           train_cfg.get("contrast"), train_cfg.get("noise"))
        rep, dat = parallel.replicated(mesh), parallel.data_sharded(mesh)
        _STEP_PROGRAMS[key] = (
            optimizer,
            jax.jit(train_step, in_shardings=(rep, dat, rep), out_shardings=(rep, rep), donate_argnums=0),
            jax.jit(eval_step, in_shardings=(rep, dat), out_shardings=rep))
    return _STEP_PROGRAMS[key]


def setup_run(config, sources, transforms, *, init_variables=None) -> RunSetup:
    """The one place a run is initialised (see `init_state` for where its variables come from)."""
    tc = config.train
    mesh = parallel.make_mesh()
    local_batch = parallel.check_batch_size(tc.batch_size, mesh)
    model = build(config.model)
    steps_per_epoch = len(sources["train"]) // tc.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"train split has {len(sources['train'])} examples, fewer than one batch")
    optimizer, train_step, eval_step = step_programs(model, tc, steps_per_epoch, mesh)
    example = first_example(sources, transforms)
    state = init_state(model, optimizer, jax.random.key(config.seed), np.shape(example["image"]),
                       np.shape(example["audio"])[-1], config.model.num_classes, defense=tc.defense.name,
                       init_variables=init_variables, visual_init=tc.get("visual_init", ""))
    log.info("%s\n%s", type(model).__name__, parameter_overview(state.params))
    return RunSetup(model, optimizer, train_step, eval_step, mesh, local_batch, steps_per_epoch,
                    steps_per_epoch * tc.num_epochs, state)


def latest_variables(config, workdir, sources, transforms, *, init_variables=None):
    """The model variables of a run's latest checkpoint (e.g. to fine-tune from, as the released
    defense scripts start from `*_latest.pth`), on the host."""
    run = setup_run(config, sources, transforms, init_variables=init_variables)
    ckpt_dir = os.path.join(os.fspath(workdir), "checkpoints")
    with RunCheckpoints(ckpt_dir) as ckpts:
        if ckpts.latest_step() is None:
            raise FileNotFoundError(f"{ckpt_dir}: no checkpoint to start from (train that run first)")
        state, _, _, _ = ckpts.restore_latest_good(run.state, run.state.variables())
    return _to_host(state.variables())


def evaluate_split(p_eval, state, source, transform, *, local_batch, mesh, workers, split) -> dict:
    """Accuracy and loss of `state` over a whole split (masked padding: every example once)."""
    ds = pipeline.eval_dataset(source, transform, batch_size=local_batch, workers=workers)
    totals = {"correct": 0.0, "loss_sum": 0.0, "count": 0.0}
    n_batches = pipeline.num_eval_batches(source, local_batch)
    for batch in tqdm(pipeline.exactly(ds, n_batches), total=n_batches, desc=f"eval {split}",
                      leave=False, disable=jax.process_index() != 0, mininterval=5):
        sums = p_eval(state, parallel.global_batch(batch, mesh))
        for k in totals:
            totals[k] += float(sums[k])
    n = max(totals["count"], 1.0)
    return {"accuracy": totals["correct"] / n, "loss": totals["loss_sum"] / n, "count": int(totals["count"])}


def fit_schedule(config, num_train: int, num_val: int):
    """-> the config with its schedule stretched to `train.min_steps` optimizer steps where the epochs would give
    fewer (epochs and lr_steps scaled by the same factor), logging what changed; warns, with what to change,
    about runs of fewer than `train.few_steps` steps or validated on fewer than `train.few_val` examples."""
    tc = config.train
    steps_per_epoch = max(num_train // tc.batch_size, 1)
    steps = steps_per_epoch * tc.num_epochs
    if tc.get("min_steps", 0) and steps < tc.min_steps:
        epochs = -(-tc.min_steps // steps_per_epoch)
        factor = epochs / tc.num_epochs
        config = copy.deepcopy(config)
        with config.unlocked():
            config.train.num_epochs = epochs
            config.train.lr_steps = tuple(int(round(e * factor)) for e in tc.lr_steps)
        log.info("%d training examples at batch %d are %d optimizer step(s) an epoch: training %d epochs instead "
                 "of %d (lr decays at epochs %s) to reach train.min_steps=%d", num_train, tc.batch_size,
                 steps_per_epoch, epochs, tc.num_epochs, list(config.train.lr_steps), tc.min_steps)
        steps = steps_per_epoch * epochs
    if steps < tc.get("few_steps", 0):
        log.warning("this run takes only %d optimizer steps (%d examples, batch %d, %d epochs): too few to train "
                    "the models well; raise --config.train.min_steps (or num_epochs), or lower "
                    "--config.train.batch_size", steps, num_train, tc.batch_size, config.train.num_epochs)
    if num_val < tc.get("few_val", 0):
        log.warning("the validation split has %d examples: the best-on-validation model is picked on noise; add "
                    "validation rows (or raise --config.data.val_fraction)", num_val)
    return config


def train_and_evaluate(config, workdir, sources, transforms, *, writer=None, init_variables=None):
    """Train (resuming from `workdir/checkpoints`), then test the best-on-validation weights.

    -> (summary dict, best variables on the host). A second call on a finished run restores its last
    checkpoint and only re-runs the test evaluation.
    """
    config = fit_schedule(config, len(sources["train"]), len(sources["val"]))
    tc = config.train
    run = setup_run(config, sources, transforms, init_variables=init_variables)
    mesh = run.mesh
    scalars = functools.partial(_scalars, writer)
    p_train, p_eval = run.train_step, run.eval_step
    evaluate = functools.partial(evaluate_split, p_eval, local_batch=run.local_batch, mesh=mesh,
                                 workers=config.data.workers)
    ds = pipeline.train_dataset(sources["train"], transforms["train"], batch_size=run.local_batch,
                                seed=config.seed, workers=config.data.workers,
                                read_threads=config.data.read_threads, read_buffer=config.data.read_buffer)
    it = iter(ds)
    state = parallel.replicate(run.state, mesh)
    best = _to_host(state.variables())
    meta = {"epoch": 0, "best_accuracy": -1.0, "best_epoch": 0, "history": [],
            "config_hash": training_config_hash(config)}
    ckpt_dir = os.path.join(os.fspath(workdir), "checkpoints")
    with RunCheckpoints(ckpt_dir) as ckpts, _sigterm_flag() as sigterm:
        if ckpts.latest_step() is not None:
            state, best, restored_meta, _ = ckpts.restore_latest_good(state, best)
            if restored_meta.get("config_hash") != meta["config_hash"]:
                raise ConfigError(
                    f"{ckpt_dir} holds checkpoints of a different training config (hash "
                    f"{restored_meta.get('config_hash')} != {meta['config_hash']}); use another workdir")
            meta = restored_meta
            it.set_state(meta["data_iterator"])
            log.info("resumed from %s step %d (epoch %d)", ckpt_dir, int(state.step), meta["epoch"])
        start = int(state.step)
        key = jax.random.key(config.seed)

        saved_at = time.perf_counter()

        def save(step):
            nonlocal saved_at
            if not _all_finite(state.trainable()):
                raise NonFiniteLossError(
                    f"non-finite parameters after step {step}; not saved, the last good checkpoint "
                    f"in {ckpt_dir} is kept (step {ckpts.latest_step()})")
            ckpts.save(step, state, best, dict(meta, data_iterator=it.get_state()))
            saved_at = time.perf_counter()

        min_interval = tc.get("checkpoint_min_interval_s", 0.0)

        bar = tqdm(total=run.total_steps, initial=start, desc="train", unit="step",
                   disable=jax.process_index() != 0, mininterval=5)
        t0, seen = time.perf_counter(), 0
        for step in range(start, run.total_steps):
            batch = parallel.global_batch(next(it), mesh)
            state, metrics = p_train(state, batch, jax.random.fold_in(key, step))
            bar.update(1)
            seen += tc.batch_size
            done = step + 1
            epoch_end = done % run.steps_per_epoch == 0
            if done % tc.log_every_steps == 0 or epoch_end:
                m = {k: float(v) for k, v in metrics.items()}
                if not np.isfinite(m["loss"]):
                    raise NonFiniteLossError(
                        f"non-finite loss {m['loss']} at step {done}; the last good checkpoint "
                        f"in {ckpt_dir} is kept (step {ckpts.latest_step()})")
                rate = seen / (time.perf_counter() - t0)
                bar.set_postfix(loss=f"{m['loss']:.3f}", acc=f"{m['accuracy']:.3f}", ex_s=f"{rate:.0f}")
                scalars("train", m | {"examples_per_s": rate}, done)
            if epoch_end:
                epoch = done // run.steps_per_epoch
                val = evaluate(state, sources["val"], transforms["eval"], split="val")
                meta["history"].append({"epoch": epoch, "step": done, **val})
                meta["epoch"] = epoch
                if val["accuracy"] > meta["best_accuracy"]:
                    meta["best_accuracy"], meta["best_epoch"] = val["accuracy"], epoch
                    best = _to_host(state.variables())
                scalars("val", val, done)
                log.info("epoch %d/%d: val accuracy %.4f (best %.4f at epoch %d); %.1f ex/s",
                         epoch, tc.num_epochs, val["accuracy"], meta["best_accuracy"],
                         meta["best_epoch"], seen / (time.perf_counter() - t0))
            if (epoch_end and time.perf_counter() - saved_at >= min_interval) or (
                    tc.checkpoint_every_steps and done % tc.checkpoint_every_steps == 0):
                save(done)
            if sigterm["set"]:
                save(done)
                raise Preempted(f"SIGTERM: checkpoint saved at step {done} in {ckpt_dir}")
        bar.close()
        if run.total_steps and ckpts.latest_step() != run.total_steps:
            save(run.total_steps)
    best_state = parallel.replicate(_to_host(state.replace(**best)), mesh)
    test = evaluate(best_state, sources["test"], transforms["eval"], split="test")
    scalars("test", test, run.total_steps)
    log.info("test accuracy of the best-on-validation model (epoch %d): %.4f", meta["best_epoch"],
             test["accuracy"])
    summary = {"best_epoch": meta["best_epoch"], "best_val_accuracy": meta["best_accuracy"],
               "test_accuracy": test["accuracy"], "test_count": test["count"], "history": meta["history"],
               "steps": run.total_steps}
    return summary, best


def _scalars(writer, prefix, metrics, step):
    if writer is None:
        return
    for k, v in metrics.items():
        if isinstance(v, (int, float)):
            writer.add_scalar(f"{prefix}/{k}", v, step)
    writer.flush()
