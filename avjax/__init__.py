"""avjax: audio-visual event classifiers under multimodal adversarial attack, in JAX/Flax."""

__version__ = "0.1.0"
