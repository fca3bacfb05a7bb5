"""``agency-gateway demo``: the whole loop against sandbox agencies on loopback.

``data`` makes a deterministic portfolio, ``sandboxes`` starts the simulated agencies beside
the gateway, ``runner`` drives intake to reconciliation and ``report`` prints what it left.
"""

from typing import TYPE_CHECKING

from gateway.exports import lazy_exports

if TYPE_CHECKING:
    from gateway.demo.runner import DemoOptions, run_demo

__all__ = ["DemoOptions", "run_demo"]

__getattr__ = lazy_exports(
    __name__,
    {
        "DemoOptions": "gateway.demo.runner",
        "run_demo": "gateway.demo.runner",
    },
)
