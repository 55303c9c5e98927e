"""Threat model: per-modality eps, units, bounds, and the space in which updates happen.

Images are attacked in an affine "attack space" z = (pixel - shift) / scale:
  * `units='pixel'` (default for new work): shift 0, scale 1; eps is in pixel units of [0, 1].
  * `units='normalized'` (the paper): shift = ImageNet mean, scale = ImageNet std; eps, step,
    gradient normalisation and projection all act on normalised values, exactly as the original
    code, i.e. a per-channel pixel eps of eps * std_c.
After every update the frame is mapped back to pixels, clamped to [0, 1] and mapped forward again
(the original's un-normalise / clamp / re-normalise). Waveforms are attacked in their own units and
clamped to [-1, 1].
"""
import dataclasses

import jax.numpy as jnp

from avjax.common import IMAGENET_MEAN, IMAGENET_STD

UNITS = ("pixel", "normalized")
PIXEL_BOUNDS = (0.0, 1.0)
AUDIO_BOUNDS = (-1.0, 1.0)


@dataclasses.dataclass(frozen=True)
class ImageSpace:
    """Affine map between pixels and the space image attacks act in."""

    shift: tuple[float, ...] = (0.0, 0.0, 0.0)
    scale: tuple[float, ...] = (1.0, 1.0, 1.0)
    bounds: tuple[float, float] = PIXEL_BOUNDS

    def to_attack(self, pixels):
        return (pixels - jnp.asarray(self.shift, pixels.dtype)) / jnp.asarray(self.scale, pixels.dtype)

    def to_pixels(self, z):
        return z * jnp.asarray(self.scale, z.dtype) + jnp.asarray(self.shift, z.dtype)

    def clamp(self, z):
        """-> (pixels clamped to bounds, their attack-space values)."""
        pixels = jnp.clip(self.to_pixels(z), *self.bounds)
        return pixels, self.to_attack(pixels)


def image_space(units: str, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> ImageSpace:
    if units == "pixel":
        return ImageSpace()
    if units == "normalized":
        return ImageSpace(tuple(float(m) for m in mean), tuple(float(s) for s in std))
    raise ValueError(f"unknown units {units!r}; choose one of {UNITS}")


def pixel_eps(eps_visual: float, units: str, std=IMAGENET_STD):
    """The per-channel pixel-space L-inf radius an image eps amounts to."""
    return tuple(eps_visual * s for s in (std if units == "normalized" else (1.0, 1.0, 1.0)))
