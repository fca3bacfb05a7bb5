"""The sandbox law firm's clerk: what it answers to each referral mail (pure, seeded).

For each case in the attached case file: an acknowledgement with the firm's file number and
the balance it loaded, a lawyer's letter, in half the cases a suit with its court and court
case number, sometimes a payment or a return. A recall is answered with a return, a request
to delete a case's personal data with a ``data.deleted`` row (method ``deleted``). At
``fault_rate`` per mail the answer is faulty: no sheet (``unparseable``), a suit without its
court case number (``bad_line``), no threading headers and no subject tag (``unthreaded``),
the same reply delivered twice (``duplicate``), or a reply sent without the firm's signature
(``unsigned``: the gateway must keep it for ops and read nothing in it). One clean reply in
ten loses its threading headers but keeps the subject tag (``subject_only``), as some mail
clients do.
"""

import csv
import io
import json
import random
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage, Message
from email.policy import SMTP, default as default_policy
from email.utils import format_datetime, make_msgid

from gateway.inbound.reply_sheet import REPLY_COLUMNS

FAULTS = ("unparseable", "bad_line", "unthreaded", "duplicate", "unsigned")
COURTS = (
    ("上海市浦东新区人民法院", "(2026)沪0115民初{n}号"),
    ("北京市朝阳区人民法院", "(2026)京0105民初{n}号"),
    ("深圳市南山区人民法院", "(2026)粤0305民初{n}号"),
)

CLOSING_ROWS: dict[str, dict[str, str]] = {
    "placement.recalled": {"event_type": "case.returned", "reason": "recalled", "amount": "0"},
    "data.deletion_requested": {"event_type": "data.deleted", "reason": "deleted"},
}
"""The one row that answers a packet ending the firm's work on a case (``reason`` carries
a deletion's method: gateway.inbound.sheets)."""


@dataclass(frozen=True, slots=True)
class ReceivedCase:
    packet_type: str
    placement_id: str
    balance: str
    currency: str


@dataclass(frozen=True, slots=True)
class Answer:
    """A reply to put in the firm-facing mailbox, ``copies`` times."""

    reply: bytes
    copies: int
    fault: str | None


def cases_in(inner: Message) -> list[ReceivedCase]:
    """The cases of a referral, from its attached case file (CSV or JSON)."""
    for part in inner.walk():
        name = part.get_filename() or ""
        if name.startswith(("回复表", "reply")):
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        if name.endswith(".json"):
            rows = json.loads(payload)
        elif name.endswith(".csv"):
            rows = list(csv.DictReader(io.StringIO(payload.decode("utf-8-sig"))))
        else:
            continue
        return [
            ReceivedCase(
                r.get("packet_type", "placement.created"),
                r["placement_id"],
                r.get("balance", "0.00"),
                r.get("currency", "CNY"),
            )
            for r in rows
        ]
    return []


class FirmScript:
    """Decides the firm's answers; ``faults`` counts the variants it chose."""

    def __init__(
        self, *, seed: int, fault_rate: float, firm_address: str, lender_address: str
    ) -> None:
        self._rng = random.Random(seed)
        self._fault_rate = fault_rate
        self._firm = firm_address
        self._lender = lender_address
        self._counter = 0
        self.faults: Counter[str] = Counter()

    def answer(
        self, original: Message, cases: list[ReceivedCase], *, now: datetime
    ) -> Answer | None:
        """The reply to one referral mail, or None when nothing calls for one."""
        rng = self._rng
        fault = rng.choice(FAULTS) if rng.random() < self._fault_rate else None
        rows = [row for case in cases for row in self._rows(case, fault, now)]
        if not rows:
            return None
        if fault is not None:
            self.faults[fault] += 1
        return Answer(
            self._reply(original, rows, fault, now), 2 if fault == "duplicate" else 1, fault
        )

    def _rows(self, case: ReceivedCase, fault: str | None, now: datetime) -> list[dict[str, str]]:
        rng = self._rng
        self._counter += 1
        n = self._counter
        base = {"placement_id": case.placement_id, "occurred_at": now.date().isoformat()}
        if case.packet_type in CLOSING_ROWS:
            return [{**base, **CLOSING_ROWS[case.packet_type]}]
        if case.packet_type != "placement.created":
            return []
        rows = [
            {
                **base,
                "event_type": "placement.acknowledged",
                "agency_case_ref": f"ZY2026-{n:05d}",
                "amount": case.balance,
            },
            {**base, "event_type": "legal.action", "action": "lawyer_letter"},
        ]
        if rng.random() < 0.5 or fault == "bad_line":
            court, number = rng.choice(COURTS)
            rows.append(
                {
                    **base,
                    "event_type": "legal.action",
                    "action": "suit_filed",
                    "court": court,
                    "court_case_number": "" if fault == "bad_line" else number.format(n=10000 + n),
                }
            )
        roll = rng.random()
        if roll < 0.15:
            whole, _, cents = case.balance.partition(".")
            rows.append(
                {
                    **base,
                    "event_type": "payment.reported",
                    "payment_id": f"ZYP{n:06d}",
                    "amount": f"{max(1, int(whole) // 4)}.{cents or '00'}",
                }
            )
        elif roll < 0.25:
            rows.append(
                {
                    **base,
                    "event_type": "case.returned",
                    "reason": "uncollectable",
                    "amount": case.balance,
                }
            )
        return rows

    def _reply(
        self, original: Message, rows: list[dict[str, str]], fault: str | None, now: datetime
    ) -> bytes:
        reply = EmailMessage(policy=default_policy)
        reply["From"] = self._firm
        reply["To"] = self._lender
        subject = str(original.get("Subject", ""))
        if fault != "unthreaded" and self._rng.random() >= 0.1:
            reply["In-Reply-To"] = str(original["Message-ID"])
            reply["References"] = str(original["Message-ID"])
        elif fault is None:
            self.faults["subject_only"] += 1
        reply["Subject"] = "关于贵司委托案件的回复" if fault == "unthreaded" else f"回复: {subject}"
        reply["Date"] = format_datetime(now)
        reply["Message-ID"] = make_msgid(domain="sandbox.law-firm.test")
        if fault == "unparseable":
            reply.set_content("贵司来函收悉。材料齐全。我所将尽快处理并另行回复。\n", cte="base64")
            return reply.as_bytes(policy=SMTP)
        reply.set_content("贵司来函收悉。办理进展见附件回复表。\n\n正义律师事务所\n", cte="base64")
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=REPLY_COLUMNS, lineterminator="\r\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in REPLY_COLUMNS})
        reply.add_attachment(
            b"\xef\xbb\xbf" + out.getvalue().encode(),
            maintype="text",
            subtype="csv",
            filename="回复表.csv",
        )
        return reply.as_bytes(policy=SMTP)


__all__ = ["CLOSING_ROWS", "COURTS", "FAULTS", "Answer", "FirmScript", "ReceivedCase", "cases_in"]
