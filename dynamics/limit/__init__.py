"""The limit engine: width-limit kernels at initialisation (THEORY §3; kernels.py) and the training-time
particle solver (THEORY §6; nfd.py, written as a run by run.py)."""
from dynamics.limit.kernels import (continuum_kernels, dual_V, dual_Vprime, init_kernels, phi, phi_prime,
                                    sde_particles)

from dynamics.limit.nfd import LimitError, LimitResult, solve_limit

__all__ = ["LimitError", "LimitResult", "solve_limit", "continuum_kernels", "dual_V", "dual_Vprime", "init_kernels", "phi", "phi_prime", "sde_particles"]
