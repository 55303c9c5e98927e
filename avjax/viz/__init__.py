"""Plots: accuracy-vs-eps curves (and, later, heat maps and embeddings)."""
