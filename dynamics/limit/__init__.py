"""The limit engine: width-limit kernels at initialisation (THEORY §3); see kernels.py."""
from dynamics.limit.kernels import (continuum_kernels, dual_V, dual_Vprime, init_kernels, phi, phi_prime,
                                    sde_particles)

__all__ = ["continuum_kernels", "dual_V", "dual_Vprime", "init_kernels", "phi", "phi_prime", "sde_particles"]
