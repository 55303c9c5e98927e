"""The one entry point with flags: `python -m avjax.main --config=configs/<name>.py --workdir=DIR`.

`--config.<field>=value` overrides any config field (an unknown field is an error); a config
variant follows the file after a colon, e.g. `--config=configs/ave.py:fusion=film,runlocal`.
Stages: `--config.stages=evaluate` evaluates an existing workdir (or `config.eval.models`, e.g. a
directory written by `python -m avjax.porting.convert`). Multi-host: start one process per host
with JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID set (see docs/scaling.md).
"""
import logging
import os
import sys

from absl import app, flags
from ml_collections import config_flags

config_flags.DEFINE_config_file("config", None, "experiment config file", lock_config=True)
flags.DEFINE_string("workdir", None, "directory for checkpoints, logs and results")
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    import jax  # avjax's XLA:CPU flags were applied when the avjax package was imported
    from avjax import compiled, experiment, parallel
    parallel.initialize_distributed()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        stream=sys.stdout, force=True)
    logging.getLogger("absl").setLevel(logging.WARNING)
    compiled.use_persistent_cache(FLAGS.config.compilation_cache)
    parallel.log_topology(parallel.make_mesh())
    workdir = os.path.abspath(FLAGS.workdir)
    writer_factory = None
    if jax.process_index() == 0:
        from tensorboardX import SummaryWriter
        writer_factory = lambda name: SummaryWriter(os.path.join(workdir, "tb", name))  # noqa: E731
    from avjax.train.loop import Preempted
    try:
        experiment.run(FLAGS.config, workdir, writer_factory)
    except Preempted as e:
        logging.warning("%s; run the same command again to resume", e)
        return
    results_md = os.path.join(workdir, "results.md")
    if jax.process_index() == 0 and os.path.exists(results_md):
        print(open(results_md).read())


if __name__ == "__main__":
    app.run(main)
