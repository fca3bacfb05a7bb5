"""Every package states its public names in ``__all__`` and every name exists
(the idea of httpx's test_exported_members)."""

import importlib
import pkgutil
import sys
from types import ModuleType

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


def export_problems(name: str) -> list[str]:
    """What is wrong with the ``__all__`` of module ``name`` (nothing when it is right)."""
    module = importlib.import_module(name)
    names = getattr(module, "__all__", None)
    if names is None:
        return [f"{name} has no __all__"]
    if not isinstance(names, list | tuple):
        return [f"{name}.__all__ is not a list"]
    problems = [f"{name}.__all__ lists {n!r} twice" for n in set(names) if names.count(n) > 1]
    missing = [member for member in names if not hasattr(module, member)]
    if missing:
        problems.append(f"{name}.__all__ names missing members {missing}")
    return problems


def test_every_module_states_its_public_names_and_each_exists() -> None:
    """One test for the whole tree (the public names are a convention, not behaviour: a
    test per module would count imports as tests)."""
    problems = [p for name in all_modules() for p in export_problems(name)]
    assert problems == []


def test_every_package_docstring_says_what_it_owns() -> None:
    thin = [
        name for name in PACKAGES if len((importlib.import_module(name).__doc__ or "").split()) < 8
    ]
    assert thin == [], "these __init__.py should say in their docstring what the package owns"


def test_the_export_check_finds_what_it_looks_for() -> None:
    """Guard the check itself: a module without ``__all__``, one naming a missing member and
    one listing a name twice are each reported."""
    for source, expected in [
        ("x = 1", "has no __all__"),
        ("__all__ = ['gone']", "names missing members ['gone']"),
        ("x = 1\n__all__ = ['x', 'x']", "lists 'x' twice"),
    ]:
        module = ModuleType("gateway._export_probe")
        exec(source, module.__dict__)
        sys.modules[module.__name__] = module
        try:
            [problem] = export_problems(module.__name__)
        finally:
            del sys.modules[module.__name__]
        assert expected in problem, problem


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
