"""The one entry point with flags: `python -m avjax.main --config=configs/<name>.py --workdir=DIR`.

`--config.<field>=value` overrides any config field (an unknown field is an error); a config
variant follows the file after a colon, e.g. `--config=configs/ave.py:fusion=film,runlocal`.
Stages: `--config.stages=evaluate` evaluates an existing workdir (or `config.eval.models`, e.g. a
directory written by `python -m avjax.porting.convert`). Multi-host: start one process per host
with JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID set (see docs/scaling.md).
"""
import logging
import os
import re
import sys

from absl import app, flags
from ml_collections import config_flags

config_flags.DEFINE_config_file("config", None, "experiment config file", lock_config=True)
flags.DEFINE_string("workdir", None, "directory for checkpoints, logs and results")
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def _user_error(message: str):
    """Print a problem the user fixes as one message and exit with status 2 (no traceback)."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _last_exception_line(text: str) -> str:
    """The `Type: message` line that ends a formatted traceback inside a flag error (ml_collections puts the
    config file's traceback into its message), or the text itself."""
    if "Traceback (most recent call last)" not in text:
        return text.strip()
    matches = [m for m in (re.match(r"^[\w.]+(?:Error|Exception): (.*)$", line.strip()) for line in text.splitlines())
               if m]
    return matches[-1].group(1) if matches else text.strip()


def parse_flags(argv):
    """absl's flag parsing, with config problems (a missing config file, an unknown variant or field) reported
    as one message instead of the config loader's traceback."""
    try:
        rest = FLAGS(argv)
        FLAGS.config.keys()  # ml_collections reports a config file it could not load on first use
        return rest
    except OSError as e:
        cause = e.__cause__ or e
        _user_error("cannot load --config: " + " ".join(str(cause).split()))
    except flags.Error as e:
        _user_error(_last_exception_line(str(e)))
    except (AttributeError, KeyError) as e:  # ml_collections on an override of a field the config lacks
        overrides = [a.split("=")[0] for a in argv[1:] if a.startswith("--config.")]
        _user_error(f"the config has no field {str(e).strip(chr(34))} (overrides given: {', '.join(overrides)}); "
                    "docs/config.md lists every field of every config")


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
    from avjax.errors import UsageError
    from avjax.train.loop import Preempted
    try:
        experiment.run(FLAGS.config, workdir, writer_factory)
    except Preempted as e:
        logging.warning("%s; run the same command again to resume", e)
        return
    except UsageError as e:  # the user's to fix: the message says how; a traceback would only bury it
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    results_md = os.path.join(workdir, "results.md")
    if jax.process_index() == 0 and os.path.exists(results_md):
        print(open(results_md).read())


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
