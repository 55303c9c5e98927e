"""The one TrainState pytree and the one place a run's initial state is made."""
import functools
import logging
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from avjax import compiled
from avjax.defenses.memory import check_memory

log = logging.getLogger(__name__)


@flax.struct.dataclass
class TrainState:
    """step, the model's `params` and `batch_stats`, its frozen external `memory` ({} unless the model
    has one: part of the model, never updated), the PCL centres (`pcl`, {} unless the defense is PCL:
    trained, but not part of the model) and the optimizer state over `trainable()`."""

    step: jax.Array
    params: Any
    batch_stats: Any
    memory: Any
    pcl: Any
    opt_state: Any

    def variables(self):
        """The model's variables (what `module.apply` and exported models take)."""
        out = {"params": self.params, "batch_stats": self.batch_stats}
        if self.memory:
            out["memory"] = self.memory
        return out

    def trainable(self):
        """Everything the optimizer updates: {'params': model params, 'pcl': PCL centres}."""
        return {"params": self.params, "pcl": self.pcl}

    def with_trainable(self, trainable):
        return self.replace(params=trainable["params"], pcl=trainable["pcl"])


@functools.partial(jax.jit, static_argnums=0, compiler_options=compiled.RUNS_ONCE)
def _init_variables(model, key, image, audio):
    """Jitted: one program instead of ~180 eager initialiser programs; the model is static (linen modules are
    hashable), so equal models share the program. The program is almost all threefry bit mixing (one
    generator per parameter) and runs once, so it is compiled as `avjax.compiled.RUNS_ONCE`."""
    return model.init(key, image, audio, train=False)


def init_state(model, optimizer, key, image_shape, audio_len, num_classes, *, defense="none",
               fused_dim=None, init_variables=None, visual_init=""):
    """The initial TrainState of a run.

    Variables are `init_variables` when given (e.g. fine-tuning from another run), else a random
    initialisation from `key` whose visual trunk, when `visual_init` names torchvision's ResNet18
    file (.pth / .safetensors), holds its ImageNet weights. PCL centres are drawn N(0, 1) as the
    official PCL code does.
    """
    image = jnp.zeros((1,) + tuple(image_shape), jnp.float32)
    audio = jnp.zeros((1, audio_len), jnp.float32)
    k_model, k_pcl = jax.random.split(key)
    variables = init_variables or _init_variables(model, k_model, image, audio)
    if visual_init and visual_init != "none" and init_variables is None:
        from avjax import porting
        trunk = porting.resnet18_from_torchvision(visual_init)
        variables = {"params": {**variables["params"], "visual_net": trunk["params"]},
                     "batch_stats": {**variables["batch_stats"], "visual_net": trunk["batch_stats"]}}
        log.info("visual trunk initialised from %s", visual_init)
    params = dict(variables["params"])
    memory = dict(variables.get("memory", {}))
    spec = getattr(model, "memory", None)
    if spec is not None:
        if init_variables is None or "memory" not in init_variables:
            raise ValueError("this model is defended by an external memory (model.memory.size = "
                             f"{spec.size}) but no memory was given: build it from a trained run first "
                             "(a run with `memory_from`)")
        check_memory(memory, spec, {"visual": model.feature_dim, "audio": model.feature_dim}, "init_state")
    elif memory:
        raise ValueError("variables hold a memory but the model has none (set model.memory.size)")
    pcl = {}
    if defense == "pcl":
        if fused_dim is None:
            _, out = jax.eval_shape(lambda: model.apply(variables, image, audio))
            fused_dim = out["fused"].shape[-1]
        kc, kk = jax.random.split(k_pcl)
        pcl = {"centres": jax.random.normal(kc, (num_classes, fused_dim)),
               "con_centres": jax.random.normal(kk, (num_classes, fused_dim))}
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params,
                       batch_stats=variables.get("batch_stats", {}), memory=memory, pcl=pcl, opt_state=None)
    return state.replace(opt_state=optimizer.init(state.trainable()))
