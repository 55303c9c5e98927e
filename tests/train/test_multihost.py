"""Two processes on loopback (jax.distributed over CPU) train on a global batch like one process."""
import json
import os
import socket
import pytest
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRIPT = r"""
import json, os, sys
import jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
from avjax import parallel
parallel.initialize_distributed()
import numpy as np
from avjax.data import pipeline, sources
from avjax.models import build
from avjax.train.optimizer import make_optimizer
from avjax.train.state import init_state
from avjax.train.steps import make_steps
sys.path.insert(0, '.')
from configs import synthetic
c = synthetic.get_config('runlocal')
c.data.synthetic.sizes = (32, 8, 8)
srcs, tfs = sources.build(c.data)
mesh = parallel.make_mesh()
local = parallel.check_batch_size(16, mesh)
model = build(c.model)
opt = make_optimizer(c.train, 2)
ex = srcs['train'][0]
state = parallel.replicate(init_state(model, opt, jax.random.key(0), ex['image'].shape,
                                      ex['audio'].shape[-1], 8), mesh)
train_step, _ = make_steps(model, opt, c.train.defense)
rep, dat = parallel.replicated(mesh), parallel.data_sharded(mesh)
step = jax.jit(train_step, in_shardings=(rep, dat, rep), out_shardings=(rep, rep))
# the same global batches in every layout: host h takes rows h::n of each global batch
it = iter(pipeline.train_dataset(srcs['train'], tfs['train'], batch_size=16, seed=0,
                                 shard_index=0, shard_count=1))
losses = []
for i in range(3):
    g = next(it)
    n, h = jax.process_count(), jax.process_index()
    local_batch = {k: v[h * local:(h + 1) * local] for k, v in g.items()}
    state, m = step(state, parallel.global_batch(local_batch, mesh), jax.random.key(i))
    losses.append(float(m['loss']))
print(json.dumps({'process': jax.process_index(), 'count': jax.process_count(),
                  'devices': jax.device_count(), 'losses': losses}))
"""


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_on_loopback_match_one_process():
    port = _free_port()
    # No shared compilation cache: a process that loads a program the other is still compiling runs ahead,
    # and gloo gives a collective 30 s for the other to arrive.
    base = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    base.update(JAX_PLATFORMS="cpu",
                XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=1")
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env=dict(base, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                                       JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(i)))
             for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert [r["count"] for r in results] == [2, 2] and results[0]["devices"] == 2
    single = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=base, capture_output=True,
                            text=True, timeout=600, check=True)
    one = json.loads(single.stdout.strip().splitlines()[-1])
    for r in results:
        for a, b in zip(r["losses"], one["losses"]):
            assert abs(a - b) <= 1e-5, (results, one)


def test_the_scaling_recipes_use_the_variables_this_test_sets():
    """docs/scaling.md's SSH recipes name exactly the three variables this loopback test sets and
    `avjax.parallel.initialize_distributed` reads."""
    import inspect
    import re

    from avjax import parallel
    doc = open(os.path.join(REPO, "docs", "scaling.md")).read()
    blocks = re.findall(r"```bash\n(.*?)```", doc, re.S)
    ssh = [b for b in blocks if "JAX_COORDINATOR_ADDRESS" in b]
    expected = {"JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"}
    assert len(ssh) == 2 and all(set(re.findall(r"\bJAX_[A-Z_]+", b)) == expected for b in ssh)
    source = inspect.getsource(parallel.initialize_distributed) + inspect.getsource(
        test_two_processes_on_loopback_match_one_process)
    assert all(name in source for name in expected)
    assert all("python -m avjax.main" in b for b in blocks)
