"""FGSM, PGD, MIM, APGD and FAB (white-box), Square (black-box) and feature collision (adaptive, against an
external memory) on audio, vision or both (L-inf); L2 PGD in a ball over one or both modalities (`pgd_l2`).

    adv_image, adv_audio = avjax.attacks.pgd(logits_fn, image, audio, label,
                                             eps_visual=0.006, eps_audio=0.006, units='normalized')

`logits_fn(image, audio)` returns logits (or `(logits, out)`); pass `ModelFns(module, variables)`
to have the attack traced once per shape and to skip the frozen branch of single-modality attacks.
Images are pixels in [0, 1], audio waveforms in [-1, 1]; outputs are in the same spaces. A
modality whose eps is 0 is returned untouched (bit-identical). See `core.py` for the semantics and
`variant='original'` for the released code's flaws, reproduced exactly.
"""
from avjax.attacks.api import (apgd, apgd_config, attack, fab, fab_config, fgsm, fgsm_settings, make_config, mim,
                               pgd, square, square_config)
from avjax.attacks.fab_attack import FABConfig, fab_search, run_fab
from avjax.attacks.l2_attack import L2Config, pgd_l2, run_pgd_l2
from avjax.attacks.apgd_attack import APGDConfig, apgd_search, run_apgd
from avjax.attacks.core import LOSSES, METHODS, VARIANTS, AttackConfig, run_attack
from avjax.attacks.feature_collision import (CollisionConfig, atom_labels, collision_config, feature_collision,
                                             memory_targets, run_feature_collision)
from avjax.attacks.model_fns import ModelFns
from avjax.attacks.square_attack import SquareConfig, run_square, square_search
from avjax.attacks.threat import UNITS, image_space, pixel_eps

__all__ = ["fgsm", "pgd", "mim", "attack", "make_config", "fgsm_settings", "run_attack", "AttackConfig",
           "apgd", "apgd_config", "run_apgd", "apgd_search", "APGDConfig", "square", "square_config", "run_square",
           "square_search", "SquareConfig",
           "fab", "fab_config", "run_fab", "fab_search", "FABConfig", "feature_collision", "collision_config", "run_feature_collision", "CollisionConfig", "memory_targets",
           "atom_labels", "pgd_l2", "run_pgd_l2", "L2Config", "ModelFns", "METHODS", "VARIANTS", "LOSSES", "UNITS", "image_space", "pixel_eps"]
