"""A critic with a smoothness method applied: SN on chosen layers, or DIVOUT, or plain (thesis Section 7.3).

The four methods read sigma from one place, `smoothrl.networks.spectral`, with persistent power-iteration vectors
kept in an explicit `SpectralState`. DIVGRAD and MULEPS leave the critic as it is and use `rho` in the optimiser.

A critic is either static (the method and its layers fixed when it is built, the cheapest program) or dynamic: built
with a `DynamicMethod`, arrays that may be traced, so that runs differing in method and layers share one program
(e.g. members of one `jax.vmap`). A dynamic critic computes sigma of every layer and selects with `jnp.where`; each
choice gives the static critic's values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

import haiku as hk
import jax
import jax.numpy as jnp

from smoothrl.networks import critics, spectral, spectral_norm
from smoothrl.networks.layers import LayerSpec
from smoothrl.optimizers.spectral_scaling import METHODS  # the one list of method names

# Power-iteration steps used when measuring sigma of layers that training does not iterate.
MEASURE_ITERATIONS = 5


@dataclasses.dataclass(frozen=True)
class MethodConfig:
  """Which smoothness method acts on which layers.

  Attributes:
    method: 'none'; 'sn' (normalise the selected layers); 'divout' (Eq 7.13, output divided by rho);
      'divgrad' (Eq 7.28, gradients divided by rho); 'muleps' (Eq 7.31, Adam's eps multiplied by rho).
    layers: the selected layers, indexed from the output: -1 the output layer, -2 the penultimate, ...
    lipschitz: K; SN divides a layer's weights by max(sigma / K, 1), or by sigma / K when `sn_always`.
    sn_always: divide by sigma / K even when sigma < K (Miyato et al.), not only when sigma > K.
    sn_grad_through_sigma: backpropagate through sigma (off in the thesis' RL runs, Appendix E.2.1).
    power_iterations: power-iteration steps per forward pass that advances the vectors (one learner update, and
      with `power_iteration_on_acting` one acting step too) on each selected layer.
    power_iteration_on_acting: also advance the vectors once per acting step, as PyTorch's
      `torch.nn.utils.spectral_norm` does on every forward pass in training mode, which the thesis' code (snrl)
      ran its training-time acting in (on its greedy steps; Appendix E.2.1 is silent). Off (the default): the
      vectors advance once per learner update. Acting stays a pure function of the agent state: the agent replays
      the acting steps' power iteration where the weights they saw are still current, in the next learner step
      (`dqn.make_learner_step`), and the warm-up's in `init`; see `dqn.make_dqn` for the exact equivalence.
  """

  method: Literal['none', 'sn', 'divout', 'divgrad', 'muleps'] = 'none'
  layers: tuple[int, ...] = (-2,)
  lipschitz: float = 1.0
  sn_always: bool = False
  sn_grad_through_sigma: bool = False
  power_iterations: int = 1
  power_iteration_on_acting: bool = False


@dataclasses.dataclass(frozen=True)
class RegulariserConfig:
  """The smoothness regularisers the thesis compared SN with (Appendix E.1.2).

  Attributes:
    gradient_penalty: 'none', 'norm_of_sum' (||sum_i dQ_i/ds||), 'sum_of_norms' (sum_i ||dQ_i/ds||) or
      'norm_of_max' (||d max_i Q_i/ds||), averaged over the replay batch and added to the TD loss.
    penalty_coef: the penalty's coefficient zeta.
    batch_norm: batch normalisation after the ReLU of every hidden layer.
  """

  gradient_penalty: Literal['none', 'norm_of_sum', 'sum_of_norms', 'norm_of_max'] = 'none'
  penalty_coef: float = 0.0
  batch_norm: bool = False


class DynamicMethod(NamedTuple):
  """A method and its layers as arrays, which may be traced.

  Attributes:
    method_id: int32 scalar, the method's index in `METHODS`.
    layer_mask: bool, shape (num_layers,): the selected layers, from input to output (`critics.layer_names`). All
      false for 'none', which selects nothing, as in a static critic.
  """

  method_id: jax.Array
  layer_mask: jax.Array

  def is_method(self, name: str) -> jax.Array:
    """Whether this is method `name` (a bool array)."""
    return self.method_id == METHODS.index(name)


def selected_layers(network: critics.NetworkConfig, method: MethodConfig) -> tuple[str, ...]:
  """The names of the layers `method` acts on: none for 'none', else `method.layers` resolved from the output."""
  return () if method.method == 'none' else critics.resolve_layers(network, method.layers)


def dynamic_method(method: MethodConfig, network: critics.NetworkConfig) -> DynamicMethod:
  """`method.method` and `method.layers` of the critic of `network` as a `DynamicMethod`."""
  if method.method not in METHODS:
    raise ValueError(f'unknown method {method.method!r}; valid: {", ".join(METHODS)}')
  selected = selected_layers(network, method)
  mask = [name in selected for name in critics.layer_names(network)]
  return DynamicMethod(jnp.asarray(METHODS.index(method.method), jnp.int32), jnp.asarray(mask, jnp.bool_))


class CriticOutput(NamedTuple):
  q: jax.Array  # the critic's output as the loss and acting see it
  net_state: hk.State  # updated haiku state (batch-norm statistics)
  rho: jax.Array  # prod of sigma over the selected layers of the unnormalised weights (1 for 'none': none selected)


class Critic(NamedTuple):
  """The critic's pure functions.

  init(key, obs) -> (params, net_state, spectral_state)
  apply(params, net_state, spectral_state, obs, is_training) -> CriticOutput
  advance(params, spectral_state, passes=1) -> spectral_state: power iteration on the selected layers, the
    `passes * power_iterations` steps of `passes` forward passes (a static int >= 0) on the same weights.
  measure(params, spectral_state) -> (sigmas of every layer, spectral_state)
  selected: the layers the method acts on; every layer for a dynamic critic, whose `layer_mask` selects.
  power_iteration_on_acting: `MethodConfig.power_iteration_on_acting`, for the agent to read.
  """

  init: Callable[..., tuple[hk.Params, hk.State, spectral.SpectralState]]
  apply: Callable[..., CriticOutput]
  advance: Callable[..., spectral.SpectralState]
  measure: Callable[..., tuple[dict[str, jax.Array], spectral.SpectralState]]
  specs: tuple[LayerSpec, ...]
  selected: tuple[str, ...]
  power_iteration_on_acting: bool = False


def _initialiser(net: hk.TransformedWithState, specs: Sequence[LayerSpec]):
  """`init(key, obs) -> (params, net_state, spectral_state)` with a power-iteration vector for every layer."""

  def init(key: jax.Array, obs: jax.Array) -> tuple[hk.Params, hk.State, spectral.SpectralState]:
    net_key, spectral_key = jax.random.split(key)
    params, net_state = jax.jit(net.init, static_argnums=2)(net_key, obs[None], True)
    return params, net_state, spectral.init_state(spectral_key, specs)

  return init


def make_critic(
  network: critics.NetworkConfig,
  method: MethodConfig,
  obs_shape: Sequence[int],
  num_actions: int,
  batch_norm: bool = False,
  dynamic: DynamicMethod | None = None,
  lipschitz: float | jax.Array | None = None,
) -> Critic:
  """Builds the critic of `network` with `method` applied to the layers `method.layers`.

  With `dynamic`, the method and layers come from it instead (`method.method` and `method.layers` are ignored;
  sn_always, sn_grad_through_sigma and power_iterations still come from `method`); see `_dynamic_critic`. K is
  `lipschitz` when given (a value that may be traced), else `method.lipschitz`.
  """
  if method.method not in METHODS:
    raise ValueError(f'unknown method {method.method!r}; valid: {", ".join(METHODS)}')
  lipschitz = method.lipschitz if lipschitz is None else lipschitz
  net = critics.make_critic(network, num_actions, batch_norm)
  specs = critics.layer_specs(network, obs_shape)
  if dynamic is not None:
    return _dynamic_critic(net, specs, method, dynamic, lipschitz)
  selected = selected_layers(network, method)
  selected_specs = tuple(s for s in specs if s.name in selected)
  other_specs = tuple(s for s in specs if s.name not in selected)

  def vectors(spectral_state, layer_specs):
    return {s.name: spectral_state[s.name] for s in layer_specs}

  init = _initialiser(net, specs)

  def apply(
    params: hk.Params,
    net_state: hk.State,
    spectral_state: spectral.SpectralState,
    obs: jax.Array,
    is_training: bool = False,
  ) -> CriticOutput:
    sigmas = spectral.sigmas_from_state(selected_specs, params, vectors(spectral_state, selected_specs))
    if not (method.method == 'sn' and method.sn_grad_through_sigma):
      sigmas = jax.lax.stop_gradient(sigmas)
    rho = spectral.rho(sigmas, selected)
    scales = None
    if method.method == 'sn':
      scales = spectral_norm.scales(sigmas, selected, lipschitz, method.sn_always)
    q, net_state = net.apply(params, net_state, None, obs, is_training, scales)
    if method.method == 'divout':
      q = spectral_norm.divout(q, rho)
    return CriticOutput(q, net_state, jnp.asarray(rho, jnp.float32))

  def advance(params: hk.Params, spectral_state: spectral.SpectralState, passes: int = 1) -> spectral.SpectralState:
    if not selected_specs or passes == 0:
      return spectral_state
    _, updated = spectral.estimate(
      selected_specs, params, vectors(spectral_state, selected_specs), passes * method.power_iterations
    )
    return {**spectral_state, **updated}

  def measure(params: hk.Params, spectral_state: spectral.SpectralState):
    sigmas = dict(spectral.sigmas_from_state(selected_specs, params, vectors(spectral_state, selected_specs)))
    if other_specs:
      other, updated = spectral.estimate(other_specs, params, vectors(spectral_state, other_specs), MEASURE_ITERATIONS)
      sigmas.update(other)
      spectral_state = {**spectral_state, **updated}
    return jax.lax.stop_gradient(sigmas), spectral_state

  return Critic(init, apply, advance, measure, specs, selected, method.power_iteration_on_acting)


def _dynamic_critic(
  net: hk.TransformedWithState,
  specs: tuple[LayerSpec, ...],
  method: MethodConfig,
  dynamic: DynamicMethod,
  lipschitz: float | jax.Array,
) -> Critic:
  """The critic with the method and layers of `dynamic`, possibly traced.

  With sigma_l of every layer l (from the persistent vectors) and m_l = `dynamic.layer_mask[l]`:

    rho = prod_l where(m_l, sigma_l, 1)                      (the selected layers' product; 1 for 'none')
    SN:      W_l / where(m_l, max(sigma_l / K, 1), 1)         (sigma_l / K with sn_always; Appendix E.2.1),
             applied to layer l's output before its bias (`critics.Linear`)
    DIVOUT:  o / rho                                          (Eq 7.13)

  and `rho` is reported for every method, as a static critic does, so the optimiser can apply DIVGRAD (Eq 7.28) or
  MULEPS (Eq 7.31). Power iteration runs on every layer and keeps the result only on the selected ones, so the
  vectors, and sigma as `measure` reports it, follow the static critic's.
  """
  names = tuple(s.name for s in specs)
  mask = jnp.asarray(dynamic.layer_mask, jnp.bool_)
  if mask.shape != (len(names),):
    raise ValueError(f'layer_mask has shape {mask.shape}; the critic has {len(names)} layers: {", ".join(names)}')
  selected = {name: mask[i] for i, name in enumerate(names)}
  is_sn, is_divout = dynamic.is_method('sn'), dynamic.is_method('divout')

  init = _initialiser(net, specs)

  def apply(
    params: hk.Params,
    net_state: hk.State,
    spectral_state: spectral.SpectralState,
    obs: jax.Array,
    is_training: bool = False,
  ) -> CriticOutput:
    sigmas = spectral.sigmas_from_state(specs, params, spectral_state)
    held = jax.lax.stop_gradient(sigmas)
    if not method.sn_grad_through_sigma:
      sigmas = held
    rho = jnp.asarray(1.0, jnp.float32)
    for name in names:
      rho = rho * jnp.where(selected[name], held[name], 1.0)
    normalised = {name: selected[name] & is_sn for name in names}
    scales = spectral_norm.scales_where(sigmas, normalised, lipschitz, method.sn_always)
    q, net_state = net.apply(params, net_state, None, obs, is_training, scales)
    q = jnp.where(is_divout, spectral_norm.divout(q, rho), q)
    return CriticOutput(q, net_state, rho)

  def advance(params: hk.Params, spectral_state: spectral.SpectralState, passes: int = 1) -> spectral.SpectralState:
    if passes == 0:
      return spectral_state
    _, updated = spectral.estimate(specs, params, spectral_state, passes * method.power_iterations)
    return {name: jnp.where(selected[name], updated[name], spectral_state[name]) for name in names}

  def measure(params: hk.Params, spectral_state: spectral.SpectralState):
    current = spectral.sigmas_from_state(specs, params, spectral_state)
    estimated, updated = spectral.estimate(specs, params, spectral_state, MEASURE_ITERATIONS)
    sigmas = {name: jnp.where(selected[name], current[name], estimated[name]) for name in names}
    vectors = {name: jnp.where(selected[name], spectral_state[name], updated[name]) for name in names}
    return jax.lax.stop_gradient(sigmas), vectors

  return Critic(init, apply, advance, measure, specs, names, method.power_iteration_on_acting)
