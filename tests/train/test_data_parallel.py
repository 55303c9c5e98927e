"""8 simulated CPU devices give the 1-device losses (within 1e-5) for the same global batches, and the
1-device evaluation: clean and attacked per-example results (batches sharded over the mesh)."""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRIPT = r"""
import json, sys
import jax, numpy as np
from avjax import parallel
from avjax.data import pipeline, sources
from avjax.models import build
from avjax.train.optimizer import make_optimizer
from avjax.train.state import init_state
from avjax.train.steps import make_steps
sys.path.insert(0, '.')
from configs import synthetic
c = synthetic.get_config('runlocal')
c.data.synthetic.sizes = (32, 8, 8)
c.train.batch_size = 16
srcs, tfs = sources.build(c.data)
mesh = parallel.make_mesh()
model = build(c.model)
opt = make_optimizer(c.train, 2)
ex = srcs['train'][0]
state = init_state(model, opt, jax.random.key(0), ex['image'].shape, ex['audio'].shape[-1], 8)
state = parallel.replicate(state, mesh)
train_step, _ = make_steps(model, opt, c.train.defense)
rep, dat = parallel.replicated(mesh), parallel.data_sharded(mesh)
step = jax.jit(train_step, in_shardings=(rep, dat, rep), out_shardings=(rep, rep))
it = iter(pipeline.train_dataset(srcs['train'], tfs['train'], batch_size=16, seed=0))
losses = []
for i in range(3):
    state, m = step(state, parallel.global_batch(next(it), mesh), jax.random.key(i))
    losses.append(float(m['loss']))
from avjax.attacks import ModelFns
from avjax.evaluation import robustness
c.eval.methods, c.eval.steps, c.eval.sweep_eps = ('fgsm', 'pgd'), 2, ()
spec = robustness.EvalSpec.from_config(c.eval)
fns = ModelFns(model, jax.device_get(state.variables()))
ev = robustness.evaluate_model(fns, srcs['test'], tfs['eval'], spec, batch_size=8, mesh=mesh)
per_example = {m: ev['methods'][m]['per_example'] for m in spec.methods}
print(json.dumps({'devices': jax.device_count(), 'losses': losses, 'per_example': per_example, 'n': ev['n']}))
"""


def _run(devices):
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}"
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=env, check=True,
                         capture_output=True, text=True, timeout=600)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_eight_devices_match_one():
    one, eight = _run(1), _run(8)
    assert one["devices"] == 1 and eight["devices"] == 8
    for a, b in zip(one["losses"], eight["losses"]):
        assert abs(a - b) <= 1e-5, (one, eight)
    assert one["losses"][0] != one["losses"][-1]  # the model trains
    assert one["n"] == eight["n"] == 8
    assert one["per_example"] == eight["per_example"]
