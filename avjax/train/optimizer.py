"""SGD with momentum, PyTorch-style weight decay, per-module learning rates and x0.1 step decays.

Parameter groups follow the original's optimizer: `audio` (audio_net), `visual` (visual_net),
`head` (fusion head + classifier), plus the PCL centre sets (their own lr, gradients rescaled by
1/weight as the official PCL code does, no weight decay). PyTorch's SGD adds weight_decay * p to the
gradient before momentum; `add_decayed_weights` before `sgd` does exactly that.
"""
import jax
import optax

GROUP_OF_MODULE = {"audio_net": "audio", "visual_net": "visual", "fusion_head": "head",
                   "classifier": "head"}
PCL_GROUPS = {"centres": "pcl_prox", "con_centres": "pcl_con"}


def param_labels(trainable):
    """Optimizer group of every leaf of `TrainState.trainable()` ({'params': ..., 'pcl': ...})."""
    def label(path, _):
        collection, top = path[0].key, path[1].key
        table = PCL_GROUPS if collection == "pcl" else GROUP_OF_MODULE
        try:
            return table[top]
        except KeyError:
            raise ValueError(f"{collection} entry {top!r} belongs to no optimizer group") from None
    return jax.tree_util.tree_map_with_path(label, trainable)


def step_schedule(base_lr, steps_per_epoch, lr_steps_epochs, decay):
    return optax.piecewise_constant_schedule(
        base_lr, {int(e * steps_per_epoch): decay for e in lr_steps_epochs})


def make_optimizer(train_cfg, steps_per_epoch):
    lr = train_cfg.lr
    sched = lambda base: step_schedule(base, steps_per_epoch, train_cfg.lr_steps, train_cfg.lr_decay)  # noqa: E731
    sgd = lambda base: optax.chain(  # noqa: E731
        optax.add_decayed_weights(train_cfg.weight_decay),
        optax.sgd(sched(base), momentum=train_cfg.momentum))
    transforms = {"audio": sgd(lr.audio), "visual": sgd(lr.visual), "head": sgd(lr.head)}
    defense = train_cfg.defense
    transforms["pcl_prox"] = optax.chain(optax.scale(1.0 / defense.prox_weight), optax.sgd(defense.lr_prox))
    transforms["pcl_con"] = optax.chain(optax.scale(1.0 / defense.con_weight), optax.sgd(defense.lr_con))
    return optax.multi_transform(transforms, param_labels)
