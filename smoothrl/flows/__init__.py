"""Continuous-time flows of gradient descent (thesis Chapter 3; the principal-flow paper).

- `coefficients`: α(hλ) of Table 3.1 (NGF, IGR, third-order, principal flow) and the BEA coefficients.
"""

from __future__ import annotations

from smoothrl.flows import coefficients

__all__ = ('coefficients',)
