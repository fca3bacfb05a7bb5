"""Both message catalogues are whole and every string a console template shows is marked for
translation; and the checks that say so do catch what they are for (each is fed a broken
template or catalogue once)."""

import shutil
from pathlib import Path

from babel.messages.pofile import read_po, write_po

from gateway.console import i18n
from gateway.console.catalogues import (
    missing_translations,
    read_catalogue,
    unwrapped_templates,
    unwrapped_text,
)


def test_every_marked_string_is_translated_in_both_catalogues() -> None:
    assert missing_translations() == []


def test_no_template_shows_text_outside_the_translation_markers() -> None:
    assert list(unwrapped_templates()) == []


def test_unwrapped_text_is_caught_in_text_and_attributes() -> None:
    source = (
        '<h1>{{ _("Cases") }} Mismatches</h1>'
        '<input placeholder="why you need it" aria-label="{{ _("reason") }}">'
        "{% trans n=3 %}{{ n }} shown{% endtrans %} <code>agency-gateway users add</code>"
        '<td>{{ m.id }} · HTTP {{ status }} ms</td><span title="{{ code }}">{{ x|term }}</span>'
    )
    assert unwrapped_text(source) == [
        "text: … Mismatches",
        "<input placeholder>: why you need it",
    ]


def _copy_catalogues(tmp_path: Path) -> Path:
    root = tmp_path / "locale"
    shutil.copytree(i18n.LOCALE_DIR, root)
    return root


def _rewrite(root: Path, locale: str, msgid: str, string: str, *, fuzzy: bool = False) -> None:
    path = root / locale / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as po:
        catalogue = read_po(po, locale=locale)
    message = catalogue[msgid]
    message.string = string
    if fuzzy:
        message.flags.add("fuzzy")
    with path.open("wb") as po:
        write_po(po, catalogue)


def test_the_catalogue_check_catches_each_kind_of_gap(tmp_path: Path) -> None:
    root = _copy_catalogues(tmp_path)
    assert missing_translations(root) == []
    _rewrite(root, "zh_CN", "Dashboard", "")
    _rewrite(root, "zh_CN", "Mismatches", "Mismatches")
    _rewrite(root, "zh_CN", "Cases", "案件", fuzzy=True)
    _rewrite(root, "zh_CN", "as of %(when)s", "截至")
    _rewrite(root, "en", "Agencies", "")
    assert sorted(missing_translations(root)) == [
        "en: 'Agencies' has no translation",
        "zh-CN: 'Cases' is marked fuzzy",
        "zh-CN: 'Dashboard' has no translation",
        "zh-CN: 'Mismatches' is not translated (the same as the English)",
        "zh-CN: 'as of %(when)s': the translation's %(name)s placeholders differ",
    ]


def test_a_string_missing_from_a_catalogue_is_named(tmp_path: Path) -> None:
    root = _copy_catalogues(tmp_path)
    path = root / "en" / "LC_MESSAGES" / "messages.po"
    catalogue = read_catalogue("en", root)
    catalogue.delete("Log in")
    with path.open("wb") as po:
        write_po(po, catalogue)
    assert missing_translations(root) == [
        "en: 'Log in' is not in the catalogue (run make i18n-extract)"
    ]


def test_the_catalogues_load_and_translate_by_the_current_language() -> None:
    with i18n.use(i18n.Display(language="zh-CN")):
        assert i18n.gettext("Dashboard") == "总览"
        assert i18n.ngettext("%(num)s failure", "%(num)s failures", 3) == "失败 %(num)s 次"
    with i18n.use(i18n.Display(language="en")):
        assert i18n.gettext("Dashboard") == "Dashboard"
        assert i18n.ngettext("%(num)s failure", "%(num)s failures", 3) == "%(num)s failures"
