"""Checks on the console's message catalogues, and the English catalogue's filler.

``missing_translations()`` extracts every string the templates and the console's Python mark
(the same map as ``make i18n-extract``, babel.cfg) and names each one a catalogue lacks, leaves
empty, marks fuzzy, or (Chinese only) leaves equal to the English unless listed in
``SAME_IN_CHINESE``. ``unwrapped_text()`` reads a template and names the text a user would see
that is not inside ``_()`` or a ``{% trans %}`` block: text nodes and the ``title``,
``placeholder``, ``aria-label`` and ``alt`` attributes, outside ``<code>``. The tests run both;
``python -m gateway.console.catalogues fill-english DIR`` copies every msgid into the English
catalogue (its translations are the identity).
"""

import re
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Final

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

from gateway.console.i18n import LANGUAGES, LOCALE_DIR

CONSOLE: Final = Path(__file__).parent
TEMPLATES: Final = CONSOLE / "templates"
KEYWORDS: Final = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}
METHODS: Final = [("**/templates/**.html", "jinja2"), ("**.py", "python")]
OPTIONS: Final = {
    "**/templates/**.html": {
        "extensions": "jinja2.ext.i18n",
        "trim_blocks": "True",
        "lstrip_blocks": "True",
    }
}
SAME_IN_CHINESE: Final = frozenset({"HTTP", "ms", "sha256", "webhook-id", "CSV", "XLSX"})
"""Strings a Chinese operations floor reads as they are (codes, units, acronyms)."""
ALLOWED_WORDS: Final = frozenset(
    {"agency-gateway", "ms", "HTTP", "SLA", "PII", "CSV", "XLSX", "sha256", "v", "Message-ID"}
    | {"webhook-id"}
)
"""Words a template may show unwrapped (product name, units, acronyms)."""
CHECKED_ATTRIBUTES: Final = frozenset({"title", "placeholder", "aria-label", "alt"})
_SKIPPED_ELEMENTS: Final = frozenset({"code", "script", "style", "pre", "kbd"})
_TRANS = re.compile(r"{%-?\s*trans\b.*?{%-?\s*endtrans\s*-?%}", re.S)
_COMMENT = re.compile(r"{#.*?#}", re.S)
_TAG = re.compile(r"{{.*?}}|{%.*?%}", re.S)
_PLACEHOLDER = re.compile(r"%\((\w+)\)s")
_LETTERS = re.compile(r"[A-Za-z][A-Za-z0-9'-]*")


def extracted() -> set[str]:
    """Every msgid the console marks (a plural entry by its singular, as catalogues key it)."""
    found: set[str] = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(CONSOLE), METHODS, OPTIONS, KEYWORDS
    ):
        found.add(message if isinstance(message, str) else message[0])
    return found


def _names(text: str) -> set[str]:
    return set(_PLACEHOLDER.findall(text))


def read_catalogue(language: str, root: Path = LOCALE_DIR) -> Catalog:
    path = root / LANGUAGES[language] / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as po:
        return read_po(po, locale=LANGUAGES[language])


def missing_translations(root: Path = LOCALE_DIR) -> list[str]:
    """One line per problem (see the module docstring); empty when both catalogues are whole."""
    wanted = extracted()
    problems: list[str] = []
    for language in LANGUAGES:
        catalogue = read_catalogue(language, root)
        for msgid in sorted(wanted):
            entry = catalogue.get(msgid)
            where = f"{language}: {msgid!r}"
            if entry is None:
                problems.append(f"{where} is not in the catalogue (run make i18n-extract)")
                continue
            string = entry.string
            texts = tuple(string) if isinstance(string, tuple | list) else (string or "",)
            if not all(texts):
                problems.append(f"{where} has no translation")
            elif entry.fuzzy:
                problems.append(f"{where} is marked fuzzy")
            elif language == "zh-CN" and texts[0] == msgid and msgid not in SAME_IN_CHINESE:
                problems.append(f"{where} is not translated (the same as the English)")
            elif any(_names(text) != _names(msgid) for text in texts):
                problems.append(f"{where}: the translation's %(name)s placeholders differ")
    return problems


class _TextFinder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.skipping = 0
        self.found: list[str] = []

    def _check(self, text: str | None, where: str) -> None:
        words = [w for w in _LETTERS.findall((text or "").replace("\x00", " "))]
        if any(w not in ALLOWED_WORDS and len(w) > 1 for w in words):  # "j": a key's name
            self.found.append(f"{where}: {' '.join((text or '').replace(chr(0), '…').split())}")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED_ELEMENTS:
            self.skipping += 1
        for name, value in attrs:
            if name in CHECKED_ATTRIBUTES:
                self._check(value, f"<{tag} {name}>")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_ELEMENTS and self.skipping:
            self.skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self._check(data, "text")


def unwrapped_text(source: str) -> list[str]:
    """The user-visible text of one template's source that is not marked for translation."""
    plain = _TAG.sub("\x00", _COMMENT.sub("", _TRANS.sub("\x00", source)))
    finder = _TextFinder()
    finder.feed(plain)
    finder.close()
    return finder.found


def unwrapped_templates(root: Path = TEMPLATES) -> Iterator[str]:
    for path in sorted(root.glob("*.html")):
        for problem in unwrapped_text(path.read_text(encoding="utf-8")):
            yield f"{path.name}: {problem}"


def fill_english(root: Path) -> None:
    """Make the English catalogue's translations the identity (msgstr = msgid)."""
    path = root / LANGUAGES["en"] / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as po:
        catalogue = read_po(po, locale="en")
    for message in catalogue:
        if message.id:
            message.string = message.id
            message.flags.discard("fuzzy")
    with path.open("wb") as po:
        write_po(po, catalogue, omit_header=False, sort_output=True, no_location=True, width=100)


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "fill-english":
        fill_english(Path(argv[1]))
        return 0
    print("usage: python -m gateway.console.catalogues fill-english DIR", file=sys.stderr)  # noqa: T201
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))


__all__ = [
    "ALLOWED_WORDS",
    "SAME_IN_CHINESE",
    "extracted",
    "fill_english",
    "missing_translations",
    "read_catalogue",
    "unwrapped_templates",
    "unwrapped_text",
]
