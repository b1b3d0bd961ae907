"""GAN losses on discriminator logits (thesis Section 4.1, Eqs 4.4 and 4.44).

The discriminator is D(x; φ) = ς(D_L(x; φ)) with ς the sigmoid and D_L its logit. The zero-sum game of Goodfellow
et al. has the value (Eq 4.4)

  E = ½ E_{p*(x)} log D(x; φ) + ½ E_{p(z)} log(1 − D(G(z; θ); φ)),

which the discriminator maximises and the generator minimises. Both players' losses are written as quantities each
player minimises:

  discriminator (every loss here):  L_φ = −E;
  generator, 'saturating':          L_θ = E            (zero-sum, Eq 4.4; only its second term depends on θ);
  generator, 'non_saturating':      L_θ = −E_{p(z)} log D(G(z; θ); φ)   (Eq 4.44, printed without the ½).

Everything is computed from logits with log ς(l) = −softplus(−l) and log(1 − ς(l)) = −softplus(l), which stays
finite where D saturates at 0 or 1.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

LOSSES: tuple[str, ...] = ('saturating', 'non_saturating')
Loss = Literal['saturating', 'non_saturating']


def check_loss(loss: str) -> None:
  """Raises a ValueError unless `loss` is one of `LOSSES`."""
  if loss not in LOSSES:
    raise ValueError(f'unknown GAN loss {loss!r}; valid: {", ".join(LOSSES)}')


def _logits(name: str, logits: jax.Array) -> jax.Array:
  logits = jnp.asarray(logits)
  if logits.ndim != 1 or logits.shape[0] == 0:
    raise ValueError(f'{name} must be a non-empty vector of discriminator logits (N,), got shape {logits.shape}')
  return logits


def zero_sum_value(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """E of Eq 4.4: ½ mean log D(x) + ½ mean log(1 − D(G(z))), from the logits on data and on samples."""
  real_logits = _logits('real_logits', real_logits)
  fake_logits = _logits('fake_logits', fake_logits)
  return -0.5 * jnp.mean(jax.nn.softplus(-real_logits)) - 0.5 * jnp.mean(jax.nn.softplus(fake_logits))


def discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """L_φ = −E (Eq 4.4): the discriminator's loss for both generator losses."""
  return -zero_sum_value(real_logits, fake_logits)


def generator_loss(fake_logits: jax.Array, real_logits: jax.Array, loss: Loss = 'non_saturating') -> jax.Array:
  """The generator's loss: E for 'saturating' (Eq 4.4), −mean log D(G(z)) for 'non_saturating' (Eq 4.44).

  `real_logits` enter the value of the saturating loss only (its term on data has no gradient in θ).
  """
  check_loss(loss)
  if loss == 'saturating':
    return zero_sum_value(real_logits, fake_logits)
  return jnp.mean(jax.nn.softplus(-_logits('fake_logits', fake_logits)))
