"""Defenses that are not loss terms: the external feature memory (ExFMem) and its sparse coders.

    codes = avjax.defenses.sparse_code(memory, features)     # lasso codes over a (K, dim) memory

(MinSim, MaxSim and PCL are training objectives: `avjax.train.losses`.)
"""
from avjax.defenses.sparse_coding import (ORIGINAL_STEPS, SOLVERS, VARIANTS, SolverError, blend, lasso_objective,
                                          lipschitz, shrink, sparse_code, sparse_code_with_iterations)

__all__ = ["ORIGINAL_STEPS", "SOLVERS", "VARIANTS", "SolverError", "blend", "lasso_objective", "lipschitz",
           "shrink", "sparse_code", "sparse_code_with_iterations"]
