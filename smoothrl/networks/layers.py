"""Descriptions of a network's linear layers, shared by spectral norms, critics and optimisers."""

from __future__ import annotations

import dataclasses
from typing import Literal


@dataclasses.dataclass(frozen=True)
class LayerSpec:
  """One linear layer of a network, as a linear operator on a single example.

  Attributes:
    name: the haiku module name; the layer's parameters are `params[name]['w']` (and `['b']`).
    kind: 'dense' (w of shape (in, out)) or 'conv' (w of shape (kh, kw, c_in, c_out), HWIO, NHWC inputs).
    input_shape: shape of one example's input to the layer: (in,) for dense, (H, W, C_in) for conv.
    stride: convolution stride (conv only).
    padding: 'VALID' or 'SAME' (conv only).
  """

  name: str
  kind: Literal['dense', 'conv']
  input_shape: tuple[int, ...]
  stride: int = 1
  padding: str = 'VALID'
