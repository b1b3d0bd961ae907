"""The critic's convolution as a matmul over shifted slices equals hk.Conv2D: same parameters, same outputs."""

import haiku as hk
import jax
import numpy as np
import pytest

from smoothrl.networks import critics


@pytest.mark.parametrize('kernel, stride, padding, shape', [
    (3, 1, 'VALID', (10, 10, 4)), (3, 1, 'SAME', (10, 10, 4)), (8, 4, 'VALID', (84, 84, 4)),
    (4, 2, 'VALID', (20, 20, 32)), (3, 2, 'SAME', (9, 11, 3))])
def test_patch_conv_equals_haiku_conv(kernel, stride, padding, shape):
  def net(impl):
    conv = critics.PatchConv2D if impl == 'patches' else hk.Conv2D
    return hk.without_apply_rng(hk.transform(lambda x: conv(5, kernel, stride=stride, padding=padding,
                                                            name='conv')(x)))
  x = np.random.default_rng(0).normal(size=(2, *shape)).astype(np.float32)
  params = net('xla').init(jax.random.PRNGKey(1), x)
  same_init = net('patches').init(jax.random.PRNGKey(1), x)
  jax.tree.map(np.testing.assert_array_equal, params, same_init)
  np.testing.assert_allclose(net('patches').apply(params, x), net('xla').apply(params, x), rtol=1e-5, atol=1e-5)
  grad = lambda impl: jax.grad(lambda p: (net(impl).apply(p, x) ** 2).sum())(params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4), grad('patches'), grad('xla'))
