"""The training loop: resumable, data parallel, validated every epoch, best-on-validation kept.

As the original: validation accuracy after every epoch selects the best checkpoint, which is then
evaluated on the test split. Checkpoints (state + best + data-iterator state) are written at every
epoch end, every `checkpoint_every_steps`, and on SIGTERM; a run started again with the same
command resumes from the latest one and finishes with exactly the metrics of an uninterrupted run.
A non-finite loss stops the run with an error before anything is saved, so the last checkpoint on
disk is always a good one.
"""
import contextlib
import logging
import os
import signal
import time

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from avjax import parallel
from avjax.checkpoint import RunCheckpoints
from avjax.data import pipeline
from avjax.data.sources import first_example
from avjax.models import build
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
    import hashlib
    import json
    keys = ("seed", "data", "model", "train")
    tree = {k: json.loads(config[k].to_json()) if hasattr(config[k], "to_json") else config[k]
            for k in keys}
    for section, field in (("data", "workers"), ("train", "log_every_steps"),
                           ("train", "checkpoint_every_steps")):  # do not change the trajectory
        tree[section].pop(field, None)
    blob = json.dumps(tree, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@jax.jit
def _all_finite(tree):
    return jnp.all(jnp.asarray([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def _to_host(tree):
    return jax.tree.map(lambda x: np.asarray(jax.device_get(x)), tree)


class Trainer:
    """Binds a config, its data sources and a workdir; `run()` trains (resuming) and tests."""

    def __init__(self, config, workdir, sources, transforms, *, init_variables=None, writer=None):
        self.config, self.workdir = config, os.fspath(workdir)
        self.sources, self.transforms = sources, transforms
        self.writer = writer
        tc = config.train
        self.mesh = parallel.make_mesh()
        self.local_batch = parallel.check_batch_size(tc.batch_size, self.mesh)
        self.model = build(config.model)
        self.steps_per_epoch = len(sources["train"]) // tc.batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(f"train split has {len(sources['train'])} examples, fewer than one batch")
        self.total_steps = self.steps_per_epoch * tc.num_epochs
        self.optimizer = make_optimizer(tc, self.steps_per_epoch)
        example = first_example(sources, transforms)
        state = init_state(self.model, self.optimizer, jax.random.key(config.seed),
                           np.shape(example["image"]), np.shape(example["audio"])[-1],
                           config.model.num_classes, defense=tc.defense.name,
                           init_variables=init_variables)
        log.info("%s\n%s", type(self.model).__name__, parameter_overview(state.params))
        self.state = parallel.replicate(state, self.mesh)
        train_step, eval_step = make_steps(self.model, self.optimizer, tc.defense)
        rep, dat = parallel.replicated(self.mesh), parallel.data_sharded(self.mesh)
        self.p_train = jax.jit(train_step, in_shardings=(rep, dat, rep), out_shardings=(rep, rep),
                               donate_argnums=0)
        self.p_eval = jax.jit(eval_step, in_shardings=(rep, dat), out_shardings=rep)

    # ---------------------------------------------------------------------------- evaluation
    def evaluate(self, state, split: str) -> dict:
        source = self.sources[split]
        ds = pipeline.eval_dataset(source, self.transforms["eval"], batch_size=self.local_batch,
                                   workers=self.config.data.workers)
        totals = {"correct": 0.0, "loss_sum": 0.0, "count": 0.0}
        n_batches = pipeline.num_eval_batches(source, self.local_batch)
        for batch in tqdm(pipeline.exactly(ds, n_batches), total=n_batches, desc=f"eval {split}",
                          leave=False, disable=jax.process_index() != 0, mininterval=5):
            sums = self.p_eval(state, parallel.global_batch(batch, self.mesh))
            for k in totals:
                totals[k] += float(sums[k])
        n = max(totals["count"], 1.0)
        return {"accuracy": totals["correct"] / n, "loss": totals["loss_sum"] / n,
                "count": int(totals["count"])}

    # ------------------------------------------------------------------------------ training
    def run(self) -> dict:
        tc = self.config.train
        ds = pipeline.train_dataset(self.sources["train"], self.transforms["train"],
                                    batch_size=self.local_batch, seed=self.config.seed,
                                    workers=self.config.data.workers)
        it = iter(ds)
        state = self.state
        best = _to_host(state.variables())
        meta = {"epoch": 0, "best_accuracy": -1.0, "best_epoch": 0, "history": [],
                "config_hash": training_config_hash(self.config)}
        ckpt_dir = os.path.join(self.workdir, "checkpoints")
        with RunCheckpoints(ckpt_dir) as ckpts, _sigterm_flag() as sigterm:
            if ckpts.latest_step() is not None:
                state, best, restored_meta = ckpts.restore(state, best)
                if restored_meta.get("config_hash") != meta["config_hash"]:
                    raise ValueError(
                        f"{ckpt_dir} holds checkpoints of a different training config (hash "
                        f"{restored_meta.get('config_hash')} != {meta['config_hash']}); use another workdir")
                meta = restored_meta
                it.set_state(meta["data_iterator"])
                log.info("resumed from %s step %d (epoch %d)", ckpt_dir, int(state.step), meta["epoch"])
            start = int(state.step)
            key = jax.random.key(self.config.seed)

            def save(step):
                if not bool(_all_finite(state.params)):
                    raise NonFiniteLossError(
                        f"non-finite parameters after step {step}; not saved, the last good checkpoint "
                        f"in {ckpt_dir} is kept (step {ckpts.latest_step()})")
                ckpts.save(step, state, best, dict(meta, data_iterator=it.get_state()))

            bar = tqdm(total=self.total_steps, initial=start, desc="train", unit="step",
                       disable=jax.process_index() != 0, mininterval=5)
            t0, seen = time.perf_counter(), 0
            for step in range(start, self.total_steps):
                batch = parallel.global_batch(next(it), self.mesh)
                state, metrics = self.p_train(state, batch, jax.random.fold_in(key, step))
                bar.update(1)
                seen += tc.batch_size
                done = step + 1
                epoch_end = done % self.steps_per_epoch == 0
                if done % tc.log_every_steps == 0 or epoch_end:
                    m = {k: float(v) for k, v in metrics.items()}
                    if not np.isfinite(m["loss"]):
                        raise NonFiniteLossError(
                            f"non-finite loss {m['loss']} at step {done}; the last good checkpoint "
                            f"in {ckpt_dir} is kept (step {ckpts.latest_step()})")
                    rate = seen / (time.perf_counter() - t0)
                    bar.set_postfix(loss=f"{m['loss']:.3f}", acc=f"{m['accuracy']:.3f}", ex_s=f"{rate:.0f}")
                    self._scalars("train", m | {"examples_per_s": rate}, done)
                if epoch_end:
                    epoch = done // self.steps_per_epoch
                    val = self.evaluate(state, "val")
                    meta["history"].append({"epoch": epoch, "step": done, **val})
                    meta["epoch"] = epoch
                    if val["accuracy"] > meta["best_accuracy"]:
                        meta["best_accuracy"], meta["best_epoch"] = val["accuracy"], epoch
                        best = _to_host(state.variables())
                    self._scalars("val", val, done)
                    log.info("epoch %d/%d: val accuracy %.4f (best %.4f at epoch %d); %.1f ex/s",
                             epoch, tc.num_epochs, val["accuracy"], meta["best_accuracy"],
                             meta["best_epoch"], seen / (time.perf_counter() - t0))
                    save(done)
                elif tc.checkpoint_every_steps and done % tc.checkpoint_every_steps == 0:
                    save(done)
                if sigterm["set"]:
                    save(done)
                    raise Preempted(f"SIGTERM: checkpoint saved at step {done} in {ckpt_dir}")
            bar.close()
            if self.total_steps and ckpts.latest_step() != self.total_steps:
                save(self.total_steps)
        best_state = state.replace(params={**state.params, **best["params"]},
                                   batch_stats=best["batch_stats"])
        best_state = parallel.replicate(_to_host(best_state), self.mesh)
        test = self.evaluate(best_state, "test")
        self._scalars("test", test, self.total_steps)
        log.info("test accuracy of the best-on-validation model (epoch %d): %.4f",
                 meta["best_epoch"], test["accuracy"])
        self.best_variables = best
        return {"best_epoch": meta["best_epoch"], "best_val_accuracy": meta["best_accuracy"],
                "test_accuracy": test["accuracy"], "test_count": test["count"],
                "history": meta["history"], "steps": self.total_steps}

    def _scalars(self, prefix, metrics, step):
        if self.writer is None:
            return
        for k, v in metrics.items():
            if isinstance(v, (int, float)):
                self.writer.add_scalar(f"{prefix}/{k}", v, step)
        self.writer.flush()
