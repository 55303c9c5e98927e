"""The suite's scheduling works: tests/conftest.py puts each file with expensive module fixtures in one
xdist group, so one worker builds those fixtures once. With pytest 9.2 and xdist 3.8 the groups were
silently ignored (pytest-xdist issue 1386) and both workers built every such fixture (a defense table,
six minutes, twice). This runs a small suite the same way and checks where its tests ran."""
import os
import subprocess
import sys
import textwrap
import pytest

CONFTEST = '''
import pytest

@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid.startswith("test_grouped.py"):
            item.add_marker(pytest.mark.xdist_group("test_grouped.py"))
'''

TESTS = '''
import os
import time

def _record(name, seconds):
    time.sleep(seconds)  # the grouped tests long enough for the other worker to ask for work meanwhile
    with open(os.path.join(os.environ["WHERE"], name), "w") as f:
        f.write(os.environ["PYTEST_XDIST_WORKER"])
'''


@pytest.mark.slow
def test_a_grouped_file_runs_on_one_worker(tmp_path):
    (tmp_path / "conftest.py").write_text(CONFTEST)
    for name in ("grouped", "spread"):
        seconds = 0.5 if name == "grouped" else 0.1
        body = TESTS + "".join(f"\ndef test_{i}():\n    _record('{name}_{i}', {seconds})\n" for i in range(6))
        (tmp_path / f"test_{name}.py").write_text(textwrap.dedent(body))
    where = tmp_path / "where"
    where.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "JAX_"))}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "loadgroup",
                          "-p", "no:cacheprovider", "-c", os.devnull, "--rootdir", str(tmp_path), str(tmp_path)],
                         cwd=tmp_path, env=dict(env, WHERE=str(where)), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    ran = {p.name: p.read_text() for p in where.iterdir()}
    assert len(ran) == 12
    assert len({w for n, w in ran.items() if n.startswith("grouped")}) == 1, ran
    assert len(set(ran.values())) == 2, ran  # and both workers ran tests
