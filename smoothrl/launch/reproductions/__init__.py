"""CPU-scale reproductions of the thesis' supervised figures, one command each: `smoothrl reproduce NAME`.

Each trains small runs into `OUT/runs/`, reads its numbers back from those run directories, and writes
`OUT/figure.png` and `OUT/result.json` (docs/reproductions.md lists them with the numbers measured). They are
small-scale proxies of the thesis' experiments, which used ResNets on CIFAR-10 and ImageNet.
"""

from __future__ import annotations

from smoothrl.launch.reproductions import dal, dirac_gan, edge_of_stability, flows, gans, gc, smoothness_toys
from smoothrl.launch.reproductions.common import Reproduction

REPRODUCTIONS: dict[str, Reproduction] = {
  r.name: r
  for module in (gc, dal, smoothness_toys, dirac_gan, edge_of_stability, flows, gans)
  for r in module.REPRODUCTIONS
}
