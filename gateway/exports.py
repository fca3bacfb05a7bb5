"""Package exports, imported when first used (PEP 562).

A package's ``__init__`` names its entry points in ``__all__`` and hands ``lazy_exports`` the
module each comes from. Nothing is imported until a name is asked for, so importing one module
of a package never imports the rest, and packages that use each other's modules (allocation
and privacy, reconciliation and dispatch) cannot form an import cycle through their
``__init__``. Type checkers read the same names from the package's ``TYPE_CHECKING`` imports.
"""

from collections.abc import Callable, Mapping
from importlib import import_module


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], object]:
    """The module ``__getattr__`` of ``package``: ``exports`` maps each exported name to the
    module that defines it."""

    def __getattr__(name: str) -> object:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(module), name)

    return __getattr__


__all__ = ["lazy_exports"]
