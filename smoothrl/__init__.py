"""smoothrl: deep RL in JAX with smoothness-aware optimisation."""

__version__ = '0.1.0'
