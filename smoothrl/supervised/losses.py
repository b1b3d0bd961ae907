"""Losses and accuracy of the supervised tasks, as means over a batch.

`cross_entropy` for classification (softmax on the logits, integer labels), `squared_error` for regression: the
mean over examples of ½‖f(x) − y‖² (with one output, half the mean squared error), so that its gradient in f(x) is
the residual f(x) − y over the batch size.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

TASKS: tuple[str, ...] = ('classification', 'regression')


def _check_classification(logits: jax.Array, labels: jax.Array) -> None:
  if jnp.ndim(logits) != 2:
    raise ValueError(f'logits must have shape (batch, classes), got {jnp.shape(logits)}')
  if jnp.shape(labels) != jnp.shape(logits)[:1]:
    raise ValueError(f'labels must have shape (batch,) = {jnp.shape(logits)[:1]}, got {jnp.shape(labels)}')
  if not jnp.issubdtype(jnp.result_type(labels), jnp.integer):
    raise ValueError(f'labels must be integer class indices, got dtype {jnp.result_type(labels)}')


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """The mean over the batch of −log softmax(logits)[label] (logits (B, C), integer labels (B,))."""
  _check_classification(logits, labels)
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def squared_error(pred: jax.Array, y: jax.Array) -> jax.Array:
  """The mean over the batch (the first axis) of ½‖pred − y‖², the norm over all other axes.

  `pred` and `y` must have the same shape (no broadcasting: (B, 1) against (B,) is refused).
  """
  if jnp.shape(pred) != jnp.shape(y):
    raise ValueError(f'pred and y must have the same shape, got {jnp.shape(pred)} and {jnp.shape(y)}')
  if jnp.ndim(pred) < 1:
    raise ValueError('pred and y need a batch dimension')
  sq = jnp.square(pred - y).reshape(jnp.shape(pred)[0], -1)
  return jnp.mean(0.5 * jnp.sum(sq, axis=1))


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """The fraction of the batch whose largest logit is the label's (ties go to the lowest index, as `argmax`)."""
  _check_classification(logits, labels)
  return jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))


def loss_for(task: str) -> Callable[[jax.Array, jax.Array], jax.Array]:
  """The loss of `task`: `cross_entropy` for 'classification', `squared_error` for 'regression'."""
  losses = {'classification': cross_entropy, 'regression': squared_error}
  if task not in losses:
    raise ValueError(f'unknown task {task!r}; valid: {", ".join(TASKS)}')
  return losses[task]
