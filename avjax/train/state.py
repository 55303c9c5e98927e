"""The one TrainState pytree: step, params, batch_stats, opt_state."""
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any

    def variables(self):
        return {"params": {k: v for k, v in self.params.items() if k != "pcl"},
                "batch_stats": self.batch_stats}


def init_state(model, optimizer, key, image_shape, audio_len, num_classes, *, defense="none",
               fused_dim=None, init_variables=None):
    """Initialise (or take `init_variables`) and build the optimizer state."""
    image = jnp.zeros((1,) + tuple(image_shape), jnp.float32)
    audio = jnp.zeros((1, audio_len), jnp.float32)
    k_model, k_pcl = jax.random.split(key)
    variables = init_variables or model.init(k_model, image, audio, train=False)
    params = dict(variables["params"])
    if defense == "pcl":
        if fused_dim is None:
            _, out = jax.eval_shape(lambda: model.apply(variables, image, audio))
            fused_dim = out["fused"].shape[-1]
        kc, kk = jax.random.split(k_pcl)
        params["pcl"] = {"centres": jax.random.normal(kc, (num_classes, fused_dim)),
                         "con_centres": jax.random.normal(kk, (num_classes, fused_dim))}
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables.get("batch_stats", {}), opt_state=optimizer.init(params))
