"""The console's languages: Simplified Chinese (``zh-CN``, the default) and English (``en``).

Theory of operation: the message catalogues are the checked-in ``.po`` files under
``locale/<locale>/LC_MESSAGES/messages.po``; Babel reads them once per process and compiles them
in memory (no ``.mo`` build artefact, nothing fetched at run time). Each console request picks
its language and time zone (gateway.console.languages) and sets them as the *current display*
(a context variable, so one Jinja2 environment serves every language). ``gettext`` and the
template's ``_()`` translate into the current language at call time; ``N_`` only marks a
module-level string for extraction (``make i18n-extract``), and the page translates it when it
shows it.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache
from io import BytesIO
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo

from babel import Locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

LOCALE_DIR: Final = Path(__file__).parent / "locale"
LANGUAGES: Final = {"zh-CN": "zh_CN", "en": "en"}
"""Language tag (``<html lang>``, config, ``?lang=``) → catalogue locale."""
DEFAULT_LANGUAGE: Final = "zh-CN"
NAMES: Final = {"zh-CN": "中文", "en": "English"}
SHANGHAI: Final = ZoneInfo("Asia/Shanghai")
"""Each language by its own name (the header's switch shows these untranslated)."""


@dataclass(frozen=True, slots=True)
class Display:
    """How one response speaks: its language tag and the lender's time zone."""

    language: str = DEFAULT_LANGUAGE
    zone: ZoneInfo = SHANGHAI
    path: str = "/"
    """The page asked for (where the language switch goes back to)."""

    @property
    def locale(self) -> Locale:
        return Locale.parse(LANGUAGES[self.language])


_DEFAULT: Final = Display()
_current: ContextVar[Display] = ContextVar("console_display", default=_DEFAULT)


def current() -> Display:
    """The display of the request being handled (the default outside a console request)."""
    return _current.get()


@contextmanager
def use(display: Display) -> Iterator[Display]:
    """Make ``display`` current inside the block (a request, or a test)."""
    token = _current.set(display)
    try:
        yield display
    finally:
        _current.reset(token)


def language_of(text: str | None) -> str | None:
    """``zh``, ``zh-CN``, ``zh_cn``, ``cn`` → ``zh-CN``; ``en``, ``en-GB`` → ``en``; else None."""
    tag = (text or "").strip().lower().replace("_", "-")
    if tag in ("zh", "zh-cn", "zh-hans", "zh-hans-cn", "cn"):
        return "zh-CN"
    if tag == "en" or tag.startswith("en-"):
        return "en"
    return None


@cache
def catalogue(language: str) -> Translations:
    """The translations for ``language``, read from its ``.po`` file (once per process)."""
    path = LOCALE_DIR / LANGUAGES[language] / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as po:
        messages = read_po(po, locale=LANGUAGES[language])
    compiled = BytesIO()
    write_mo(compiled, messages, use_fuzzy=False)
    compiled.seek(0)
    return Translations(compiled, domain="messages")


def gettext(message: str) -> str:
    """``message`` in the current language (itself when the catalogue lacks it)."""
    return catalogue(current().language).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return catalogue(current().language).ngettext(singular, plural, n)


def N_(message: str) -> str:  # the conventional name extractors look for
    """Mark ``message`` for extraction; it is translated where it is shown."""
    return message


_ = gettext

__all__ = [
    "DEFAULT_LANGUAGE",
    "LANGUAGES",
    "LOCALE_DIR",
    "NAMES",
    "N_",
    "SHANGHAI",
    "Display",
    "_",
    "catalogue",
    "current",
    "gettext",
    "language_of",
    "ngettext",
    "use",
]
