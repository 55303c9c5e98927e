"""The waveform network of the paper (ANet): 1-D convolutions on the raw 11025 Hz waveform.

Layout as the original `nets/audio_net.py`: 4 blocks of [Conv1d(k3, s2, p1) + BN + ReLU] x 2 followed by
MaxPool1d(2, 2), channels 64, 128, 256, 512 (times `width`), then a global max pool over time.
Any input length works (65535 samples give a 16-step map before the global pool).
"""
from typing import Any

import jax.numpy as jnp
from flax import linen as nn

from avjax.models.canonical_conv import conv_general_dilated
from avjax.models.layers import BatchNorm, max_pool_1d_pairs, scaled_channels, torch_bias_init, torch_kernel_init


class AudioNet(nn.Module):
    """(B, L) waveform in [-1, 1] -> (B, 512 * width) feature (global max over time).

    Per-block activations are sown into the `intermediates` collection as `block1`..`block4`.
    """

    width: float = 1.0
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, audio, *, train: bool = False):
        if audio.ndim != 2:
            raise ValueError(f"AudioNet expects a (batch, samples) waveform, got shape {audio.shape}")
        x = audio[:, :, None]
        in_ch = 1
        for block, ch in enumerate(scaled_channels(self.width), start=1):
            for j in (1, 2):
                x = nn.Conv(
                    ch, (3,), strides=(2,), padding=((1, 1),), use_bias=True,
                    kernel_init=torch_kernel_init(), bias_init=torch_bias_init(3 * in_ch),
                    conv_general_dilated=conv_general_dilated,
                    dtype=self.dtype, param_dtype=self.param_dtype,
                    name=f"block{block}_conv{j}")(x)
                x = BatchNorm(dtype=self.dtype, param_dtype=self.param_dtype,
                              name=f"block{block}_bn{j}")(x, train=train)
                x = nn.relu(x)
                in_ch = ch
            x = max_pool_1d_pairs(x)
            self.sow("intermediates", f"block{block}", x)
        if x.shape[1] == 0:
            raise ValueError(f"waveform of {audio.shape[1]} samples is too short for AudioNet")
        return x.max(axis=1)
