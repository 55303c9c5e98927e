import jax
import pytest

from avjax import attacks
from avjax.models import build


def sensitive_model(modality="av", num_classes=5, batch=6, size=32, length=4096, seed=0):
    """A small random model whose logits are centred and sharp enough for attacks to flip them."""
    model = build(dict(modality=modality, width=0.125, num_classes=num_classes))
    k = jax.random.split(jax.random.key(seed), 4)
    image = jax.random.uniform(k[0], (batch, size, size, 3))
    audio = 0.9 * jax.random.uniform(k[1], (batch, length), minval=-1.0, maxval=1.0)
    variables = jax.jit(model.init)(k[2], image, audio)  # jitted: one program, not one per operation
    _, out = attacks.ModelFns(model, variables)(image, audio)
    kernel = jax.random.normal(k[3], variables["params"]["classifier"]["kernel"].shape)
    params = dict(variables["params"])
    params["classifier"] = {"kernel": kernel, "bias": -(out["fused"].mean(0) @ kernel)}
    variables = dict(variables, params=params)
    fns = attacks.ModelFns(model, variables)
    label = fns(image, audio)[0].argmax(-1)
    return fns, image, audio, label


@pytest.fixture(scope="session")
def small():
    return sensitive_model()
