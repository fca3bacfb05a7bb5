"""Every file path and module the docs name exists: moving a file without mending the docs
that point at it fails here."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted(
    [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "SECURITY.md", *ROOT.glob("docs/*.md")]
)
TOP = ("gateway", "adapters", "schemas", "tests", "config", "docs")
PATH = re.compile(r"(?<![\w/.<-])((?:" + "|".join(TOP) + r")/[\w./-]*\w)")
MODULE = re.compile(r"(?<![\w/.-])((?:gateway|adapters|schemas)\.[a-z_]\w*(?:\.\w+)+)")


def stale_paths(text: str) -> list[str]:
    return sorted({p for p in PATH.findall(text) if not (ROOT / p).exists()})


def stale_modules(text: str) -> list[str]:
    """Dotted names of three parts or more (``gateway.evidence.log``, maybe followed by an
    attribute) whose first two parts are not a module or package of ours."""
    stale = set()
    for name in MODULE.findall(text):
        first_two = ROOT.joinpath(*name.split(".")[:2])
        if not (first_two.with_suffix(".py").exists() or (first_two / "__init__.py").exists()):
            stale.add(name)
    return sorted(stale)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_path_a_doc_names_exists(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    assert stale_paths(text) == [], f"{doc.name} names paths that do not exist"
    assert stale_modules(text) == [], f"{doc.name} names modules that do not exist"


def test_the_check_finds_a_stale_path_and_module() -> None:
    text = "see `gateway/mail_render.py` and gateway.mail_render.REPLY_COLUMNS, not gateway.toml"
    assert stale_paths(text) == ["gateway/mail_render.py"]
    assert stale_modules(text) == ["gateway.mail_render.REPLY_COLUMNS"]
    assert stale_paths("`gateway/evidence/log.py`") == []
    assert stale_modules("gateway.evidence.log.EvidenceLog") == []
