"""Every package states its public names in ``__all__`` and every name exists
(the idea of httpx's test_exported_members)."""

import importlib
import pkgutil
from types import ModuleType

import pytest

ROOTS = ["gateway", "adapters", "schemas"]
# Importing these runs something: the CLI entry point, or Alembic's migration environment.
NOT_IMPORTABLE = ("gateway.__main__", "gateway.store.migrations")


def all_modules() -> list[str]:
    names: list[str] = []
    for root in ROOTS:
        package = importlib.import_module(root)
        names.append(root)
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{root}."):
            if not info.name.startswith(NOT_IMPORTABLE):
                names.append(info.name)
    return sorted(names)


PACKAGES = [name for name in all_modules() if hasattr(importlib.import_module(name), "__path__")]


def exported(module: ModuleType) -> list[str]:
    names = getattr(module, "__all__", None)
    assert names is not None, f"{module.__name__} has no __all__"
    assert isinstance(names, list | tuple), f"{module.__name__}.__all__ is not a list"
    return list(names)


@pytest.mark.parametrize("name", PACKAGES)
def test_package_exports_exist(name: str) -> None:
    module = importlib.import_module(name)
    for member in exported(module):
        assert hasattr(module, member), f"{name}.__all__ names {member!r}, which is missing"


@pytest.mark.parametrize("name", PACKAGES)
def test_package_docstring_says_what_it_owns(name: str) -> None:
    doc = importlib.import_module(name).__doc__ or ""
    assert len(doc.split()) >= 8, f"{name}/__init__.py should say in its docstring what it owns"


@pytest.mark.parametrize("name", all_modules())
def test_module_exports_exist_and_are_unique(name: str) -> None:
    module = importlib.import_module(name)
    names = exported(module)
    assert len(names) == len(set(names)), f"{name}.__all__ lists a name twice"
    missing = [member for member in names if not hasattr(module, member)]
    assert not missing, f"{name}.__all__ names missing members {missing}"


def test_walk_found_the_known_modules() -> None:
    """Guard the walk itself: if it silently found nothing, the test above would prove nothing."""
    modules = set(all_modules())
    assert {
        "gateway.signing",
        "gateway.allocation.rules",
        "adapters.webhook.adapter",
        "schemas.events",
    } <= modules
    assert {"gateway.dispatch", "adapters.sftp", "gateway.reconciliation"} <= set(PACKAGES)


def test_public_error_classes_are_exported() -> None:
    from gateway import errors

    classes = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, Exception) and not name.startswith("_")
    }
    assert classes == set(errors.__all__)
