"""ResNet18 trunk with torchvision semantics (explicit padding, BasicBlock, 1x1 downsample).

Module names follow torchvision (`conv1`, `bn1`, `layer1_0`, `downsample_conv`, ...) so the porting
table reads like the PyTorch code. ImageNet normalisation happens here, so inputs are pixels in [0, 1].
"""
from typing import Any, Sequence

import jax.numpy as jnp
from flax import linen as nn

from avjax.common import IMAGENET_MEAN, IMAGENET_STD
from avjax.models.canonical_conv import conv_general_dilated
from avjax.models.layers import BatchNorm, max_pool_3x3_s2_p1, scaled_channels


def torchvision_conv_init():
    """torchvision's ResNet conv init: kaiming_normal_(mode='fan_out', nonlinearity='relu')."""
    return nn.initializers.variance_scaling(2.0, "fan_out", "normal")


class BasicBlock(nn.Module):
    channels: int
    stride: int = 1
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        conv = lambda ch, k, s, p, name: nn.Conv(  # noqa: E731
            ch, (k, k), strides=(s, s), padding=((p, p), (p, p)), use_bias=False,
            kernel_init=torchvision_conv_init(), conv_general_dilated=conv_general_dilated, dtype=self.dtype,
            param_dtype=self.param_dtype, name=name)
        bn = lambda name: BatchNorm(dtype=self.dtype, param_dtype=self.param_dtype, name=name)  # noqa: E731
        identity = x
        y = conv(self.channels, 3, self.stride, 1, "conv1")(x)
        y = nn.relu(bn("bn1")(y, train=train))
        y = conv(self.channels, 3, 1, 1, "conv2")(y)
        y = bn("bn2")(y, train=train)
        if self.stride != 1 or x.shape[-1] != self.channels:
            identity = conv(self.channels, 1, self.stride, 0, "downsample_conv")(x)
            identity = bn("downsample_bn")(identity, train=train)
        return nn.relu(y + identity)


class ResNet18(nn.Module):
    """(B, H, W, 3) pixels in [0, 1] -> (pooled (B, 512 * width), visual_map (B, h, w, 512 * width)).

    `pool` is 'avg' (what the released code effectively does: torchvision's avgpool is kept) or 'max'
    (what the paper's appendix states). `output_stride` 16 or 8 leaves the last one or two stages unstrided (a
    map of frame/16 or frame/8 instead of frame/32, same parameters; for localization). Stage outputs are sown
    into `intermediates`.
    """

    width: float = 1.0
    pool: str = "avg"
    blocks: Sequence[int] = (2, 2, 2, 2)
    output_stride: int = 32
    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, image, *, train: bool = False):
        if image.ndim != 4 or image.shape[-1] != 3:
            raise ValueError(f"ResNet18 expects (batch, H, W, 3) pixels, got shape {image.shape}")
        if self.output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {self.output_stride!r}")
        if self.pool not in ("avg", "max"):
            raise ValueError(f"visual pool must be 'avg' or 'max', got {self.pool!r}")
        mean = jnp.asarray(self.mean, image.dtype)
        std = jnp.asarray(self.std, image.dtype)
        x = (image - mean) / std
        chans = scaled_channels(self.width)
        x = nn.Conv(chans[0], (7, 7), strides=(2, 2), padding=((3, 3), (3, 3)), use_bias=False,
                    kernel_init=torchvision_conv_init(), conv_general_dilated=conv_general_dilated,
                    dtype=self.dtype, param_dtype=self.param_dtype, name="conv1")(x)
        x = BatchNorm(dtype=self.dtype, param_dtype=self.param_dtype, name="bn1")(x, train=train)
        x = max_pool_3x3_s2_p1(nn.relu(x))
        self.sow("intermediates", "stem", x)
        total = 4  # the stem's stride
        for i, (ch, n) in enumerate(zip(chans, self.blocks), start=1):
            stage_stride = 2 if i > 1 and total < self.output_stride else 1
            total *= stage_stride
            for j in range(n):
                stride = stage_stride if j == 0 else 1
                x = BasicBlock(ch, stride, dtype=self.dtype, param_dtype=self.param_dtype,
                               name=f"layer{i}_{j}")(x, train=train)
            self.sow("intermediates", f"layer{i}", x)
        pooled = x.mean(axis=(1, 2)) if self.pool == "avg" else x.max(axis=(1, 2))
        return pooled, x
