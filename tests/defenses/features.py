"""Synthetic lasso problems shaped like ExFMem's (shared by the tests and benchmarks/sparse_coding.py)."""
import numpy as np


def feature_memory(k, dim, batch, seed=0, factors=8):
    """Non-negative, correlated atoms like ReLU encoder features, and features near their span."""
    rng = np.random.default_rng(seed)
    base = np.abs(rng.normal(size=(factors, dim)))
    memory = np.abs(rng.normal(size=(k, factors)) @ base / (factors // 2) + 0.3 * rng.normal(size=(k, dim)))
    pick = rng.integers(0, k, (batch, 2))
    x = 0.6 * memory[pick[:, 0]] + 0.4 * memory[pick[:, 1]] + 0.05 * rng.normal(size=(batch, dim))
    return memory.astype(np.float32), x.astype(np.float32)
