"""The verification page's words in Chinese (the default) and English: a small catalogue of
its own, so the public page depends on nothing of the ops console (pure)."""

from typing import Final

LANGUAGES: Final = ("zh-CN", "en")
DEFAULT_LANGUAGE: Final = "zh-CN"

TEXTS: Final[dict[str, dict[str, str]]] = {
    "zh-CN": {
        "title": "核实催收人员身份",
        "intro": "请输入催收人员出示的授权委托书编号（或扫描委托书上的二维码），"
        "以及您手机号或身份证号的后4位。",
        "letter": "授权委托书编号",
        "digits": "手机号或身份证号后4位",
        "submit": "核实",
        "authorised_title": "已获授权",
        "authorised": "{agency}（电话 {phone}）目前受托处理您的借款，授权有效期至 {until}。",
        "not_yet_title": "尚未生效",
        "not_yet": "{agency} 的授权自 {since} 起生效，目前尚未生效。",
        "expired_title": "未获授权",
        "expired": "{agency} 的授权已于 {since} 到期，现已无权处理您的借款。",
        "revoked_title": "未获授权",
        "revoked": "{agency} 的授权已于 {since} 撤销，现已无权处理您的借款。",
        "superseded_title": "委托书已更新",
        "superseded": "该授权委托书已于 {since} 被新的委托书取代。"
        "请向对方索取最新的委托书后再核实。",
        "no_match_title": "无法核实",
        "no_match": "没有与您输入的信息相符的授权。请勿向对方付款，并通过官方渠道联系我们。",
        "invalid": "请输入委托书编号，以及4位数字（身份证号末位可以是 X）。",
        "limited": "核实次数过多，请 {minutes} 分钟后再试。",
        "advice": "请只通过官方渠道还款，任何人都不得要求您向个人账户或催收机构转账。",
        "unknown_phone": "未登记",
        "switch": "English",
    },
    "en": {
        "title": "Verify a debt collector",
        "intro": "Enter the authorisation letter number the collector showed you (or scan the "
        "QR code on the letter) and the last 4 digits of your phone or ID number.",
        "letter": "Authorisation letter number",
        "digits": "Last 4 digits of your phone or ID number",
        "submit": "Verify",
        "authorised_title": "Authorised",
        "authorised": "{agency} (phone {phone}) is currently authorised to act on your loan, "
        "until {until}.",
        "not_yet_title": "Not valid yet",
        "not_yet": "The authorisation of {agency} starts on {since}; it is not valid yet.",
        "expired_title": "Not authorised",
        "expired": "The authorisation of {agency} expired on {since}; it no longer acts on "
        "your loan.",
        "revoked_title": "Not authorised",
        "revoked": "The authorisation of {agency} was revoked on {since}; it no longer acts on "
        "your loan.",
        "superseded_title": "Letter replaced",
        "superseded": "This letter was replaced by a newer one on {since}. Ask the collector for "
        "the current letter and check it again.",
        "no_match_title": "No match",
        "no_match": "No authorisation matches these details. Do not pay; contact us through "
        "our official channels.",
        "invalid": "Enter the letter number and 4 digits (an ID number may end in X).",
        "limited": "Too many checks. Try again in {minutes} minutes.",
        "advice": "Repay only through our official channels. Nobody may ask you to pay into a "
        "personal account or the agency's.",
        "unknown_phone": "not registered",
        "switch": "中文",
    },
}


def language_from(query: str | None, header: str | None) -> str:
    """``?lang=`` first, then the browser's ``Accept-Language`` (by weight), else Chinese."""
    tag = _tag(query)
    if tag is not None:
        return tag
    weighted: list[tuple[float, int, str]] = []
    for index, part in enumerate((header or "").split(",")):
        name, _, params = part.strip().partition(";")
        weight = 1.0
        if params.strip().startswith("q="):
            try:
                weight = float(params.strip()[2:])
            except ValueError:
                weight = 0.0
        found = _tag(name)
        if found is not None and weight > 0:
            weighted.append((-weight, index, found))
    return min(weighted)[2] if weighted else DEFAULT_LANGUAGE


def _tag(text: str | None) -> str | None:
    tag = (text or "").strip().lower().replace("_", "-")
    if tag == "zh" or tag.startswith("zh-") or tag == "cn":
        return "zh-CN"
    if tag == "en" or tag.startswith("en-"):
        return "en"
    return None


__all__ = ["DEFAULT_LANGUAGE", "LANGUAGES", "TEXTS", "language_from"]
