"""The bottom layer: what models, attacks, defenses and training all share, and nothing else.

Imports nothing from avjax, so every package may import it without creating a cycle.
"""
import jax.numpy as jnp

# torchvision's ImageNet statistics: the models normalise pixels with them, and the paper's visual eps
# is stated in the units they define (`units='normalized'` in the threat model).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def cosine_similarity(a, b, eps=1e-8):
    """torch.nn.functional.cosine_similarity over the last axis (each norm floored at eps)."""
    na = jnp.maximum(jnp.linalg.norm(a, axis=-1), eps)
    nb = jnp.maximum(jnp.linalg.norm(b, axis=-1), eps)
    return jnp.sum(a * b, axis=-1) / (na * nb)
