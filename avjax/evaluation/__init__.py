"""Robustness evaluation: clean accuracy, xA / xV / xAV under FGSM, PGD, MIM, Avg, RI, eps sweeps."""
