"""The models the deployment benchmark knows, with their published ImageNet top-1.

BNext's figures come from :mod:`larq_bnext.registry` (rounded to one decimal, as tabled);
QuickNet's from larq-zoo's documentation (``larq_zoo.sota``).
"""

from __future__ import annotations

from larq_bnext import registry

__all__ = ["PUBLISHED_TOP1", "DISPLAY_NAMES", "BNEXT_NAMES", "QUICKNET_NAMES"]

_QUICKNETS = {"quicknet_small": ("QuickNet-S", 59.4), "quicknet": ("QuickNet", 63.3)}
_QUICKNETS["quicknet_large"] = ("QuickNet-L", 66.9)

#: Model names of the BNexts, smallest first.
BNEXT_NAMES = tuple(m.model_name for m in registry.list_models("bnext"))
#: Model names of larq-zoo's QuickNets, smallest first.
QUICKNET_NAMES = tuple(_QUICKNETS)
#: Published ImageNet top-1 (%) of every model the benchmark knows, in table order.
PUBLISHED_TOP1 = {m.model_name: round(m.top1, 1) for m in registry.list_models("bnext")} | {
    name: top1 for name, (_, top1) in _QUICKNETS.items()
}
#: How tables and plots name each model.
DISPLAY_NAMES = {m.model_name: m.display_name for m in registry.list_models("bnext")} | {
    name: display for name, (display, _) in _QUICKNETS.items()
}
