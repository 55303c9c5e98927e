"""`python -m avjax.main` reports the user's mistakes as one message with the fix and exit status 2, without a
traceback (tracebacks are for bugs)."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _main(tmp_path, *args):
    proc = subprocess.run([sys.executable, "-m", "avjax.main", *args, f"--workdir={tmp_path / 'w'}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.slow
def test_a_paper_config_without_data_and_weights_names_both_at_once(tmp_path):
    rc, out = _main(tmp_path, "--config=configs/kinetics.py")
    assert rc == 2 and "Traceback" not in out, out
    assert "--config.train.visual_init=" in out and "--config.data.root=DIR" in out, out
    assert "python -m avjax.data.prepare --preset kinetics_sounds" in out


@pytest.mark.slow
@pytest.mark.parametrize("args, says", [
    (["--config=configs/synthetic.py:defense=bogus"], "unknown defense 'bogus'"),
    (["--config=configs/synthetic.py:colour=red"], "unknown config variant(s) ['colour']"),
    (["--config=configs/synthetic.py", "--config.train.bogus_field=1"], "the config has no field 'bogus_field'"),
    (["--config=configs/no_such_config.py"], "No such file or directory: 'configs/no_such_config.py'"),
    (["--config=configs/synthetic.py:runlocal", "--config.stages=nothing"], "unknown stage(s) ['nothing']"),
])
def test_config_mistakes_are_one_message(tmp_path, args, says):
    rc, out = _main(tmp_path, *args)
    assert rc == 2 and "Traceback" not in out and "error: " in out and says in out, out
