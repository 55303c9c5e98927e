"""What the training tests share: one run of a synthetic config, built and initialised."""
import jax

from avjax.config_files import load_config
from avjax.models import build
from avjax.runs import run_config
from avjax.train.optimizer import make_optimizer
from avjax.train.state import init_state


def initial_run(variant: str, run_name: str, size: int, audio_len: int):
    """-> (config, the run's config, model, optimizer, initial state) of `configs/synthetic.py:<variant>`."""
    config = load_config("configs/synthetic.py", variant)
    rc = run_config(config, run_name)
    model = build(rc.model)
    optimizer = make_optimizer(rc.train, 1)
    state = init_state(model, optimizer, jax.random.key(0), (size, size, 3), audio_len, rc.model.num_classes)
    return config, rc, model, optimizer, state
