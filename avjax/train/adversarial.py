"""Adversarial training (Madry et al. 2018), per threat model: the positive control of the defense table.

Each training batch is replaced by its adversarial version before the loss: a random start in the eps ball, then
`steps` signed-gradient steps of `step_fraction * eps` on the cross-entropy, projected onto the ball and the
inputs' ranges (`avjax.attacks.run_attack`, the evaluation's own PGD, so the threat model trained against is the
one evaluated). The threat names which inputs are attacked, each in its own eps and units:

    'A'  the waveform only (eps_audio)       'V'  the frame only (eps_visual)       'AV'  both

`method='fast'` is the one-step variant of Wong et al. 2020 ("fast is better than free"): one step of
`fast_step_fraction * eps` (1.25) from the random start. `bn='train'` attacks the model as it trains (BatchNorm on
batch statistics, as in Madry's and most PyTorch AT code; the attack's statistics updates are discarded);
`bn='eval'` attacks it with its running statistics. `clean_weight` mixes in the clean loss (0: Madry's objective).
"""
import jax

from avjax.attacks.core import AttackConfig, run_attack
from avjax.attacks.model_fns import ModelFns
from avjax.attacks.threat import image_space
from avjax.errors import ConfigError

THREATS = ("", "A", "V", "AV")
METHODS = ("pgd", "fast")
BN_MODES = ("train", "eval")


@jax.tree_util.register_pytree_node_class
class TrainModeFns(ModelFns):
    """`ModelFns` applying the model as it trains: BatchNorm on the batch's statistics, updates discarded."""

    def __call__(self, image, audio):
        return self.module.apply(self.variables, image, audio, train=True, mutable=["batch_stats"])[0]

    def encode_visual(self, image):
        if not self.uses_visual:
            return None
        (f_v, _), _ = self.module.apply(self.variables, image, train=True, method="encode_visual",
                                        mutable=["batch_stats"])
        return f_v

    def encode_audio(self, audio):
        if not self.uses_audio:
            return None
        return self.module.apply(self.variables, audio, train=True, method="encode_audio", mutable=["batch_stats"])[0]


def check(cfg) -> None:
    """Clear errors for an adversarial-training config that cannot run (`cfg`: config.train.adversarial)."""
    if cfg["threat"] not in THREATS:
        raise ConfigError(f"train.adversarial.threat={cfg['threat']!r}; choose one of {THREATS}")
    if not cfg["threat"]:
        return
    if cfg["method"] not in METHODS:
        raise ConfigError(f"train.adversarial.method={cfg['method']!r}; choose one of {METHODS}")
    if cfg["bn"] not in BN_MODES:
        raise ConfigError(f"train.adversarial.bn={cfg['bn']!r}; choose one of {BN_MODES}")
    if cfg["method"] == "pgd" and cfg["steps"] < 1:
        raise ConfigError(f"train.adversarial.steps={cfg['steps']}: PGD training needs at least one step")
    if not 0.0 <= cfg["clean_weight"] < 1.0:
        raise ConfigError(f"train.adversarial.clean_weight={cfg['clean_weight']}: choose a weight in [0, 1)")
    eps_v, eps_a = cfg["eps_visual"], cfg["eps_audio"]
    wanted = {"A": (0.0, eps_a), "V": (eps_v, 0.0), "AV": (eps_v, eps_a)}[cfg["threat"]]
    if any(e < 0 for e in (eps_v, eps_a)) or not any(wanted):
        raise ConfigError(f"train.adversarial: threat {cfg['threat']!r} with eps_visual={eps_v}, eps_audio={eps_a} "
                          "attacks nothing")


def attack_config(cfg) -> AttackConfig:
    """The evaluation's PGD, configured as `cfg` (config.train.adversarial) trains against."""
    fast = cfg["method"] == "fast"
    return AttackConfig(
        method="pgd", steps=1 if fast else int(cfg["steps"]),
        step_fraction=float(cfg["fast_step_fraction"] if fast else cfg["step_fraction"]),
        random_start=True, loss="ce", loop="fori",
        attack_visual="V" in cfg["threat"], attack_audio="A" in cfg["threat"],
        space=image_space(cfg["units"], tuple(cfg["mean"]), tuple(cfg["std"])))


def adversarial_inputs(model, variables, batch, key, cfg):
    """-> (image, audio) of `batch` attacked as `cfg` says (the clean inputs where the threat leaves them),
    constants for the training gradient (no gradient flows back through the attack)."""
    fns = (TrainModeFns if cfg["bn"] == "train" else ModelFns)(model, variables)
    eps_v = cfg["eps_visual"] if "V" in cfg["threat"] else 0.0
    eps_a = cfg["eps_audio"] if "A" in cfg["threat"] else 0.0
    image, audio = run_attack(fns, batch["image"], batch["audio"], batch["label"], eps_v, eps_a,
                              attack_config(cfg), key)
    return jax.lax.stop_gradient(image), jax.lax.stop_gradient(audio)
