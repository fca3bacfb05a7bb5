"""The document pack on the file and mail channels (pure parts): safe remote names and the
manifest's documents, the mail's document links, what the templates list and what a firm
reads back from them, and the removed ``documents_dir`` key."""

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, strategies as st
from pydantic import ValidationError

from adapters.email.adapter import template_environment
from adapters.email.attachments import link_expiry, listed_document_ids
from adapters.email.links import LinkRefused, LinkTarget, check_link, link_url, signature
from adapters.email.render import CaseDocument, mail_case, render_content
from adapters.sftp.batches import (
    DOCUMENTS_SUFFIX,
    Manifest,
    ManifestDocument,
    ManifestFile,
    document_path,
    safe_component,
)
from adapters.sftp.documents import ListedDocument, listed_documents
from gateway.config.email import EmailSection
from gateway.dispatch.packets import render_amended, render_created
from gateway.sandbox.law_firm import listed_documents as firm_reads
from tests.factories import PII

TEMPLATES = Path(__file__).resolve().parents[2] / "config" / "templates" / "email"
KEY = b"k" * 32
SAFE = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


# -- SFTP: names and manifest -----------------------------------------------------------------


@given(st.text(min_size=1, max_size=200))
def test_every_path_component_is_safe_on_any_server(text: str) -> None:
    component = safe_component(text)
    assert set(component) <= SAFE and not component.startswith(".")
    assert 0 < len(component) <= 80


@given(st.text(min_size=1, max_size=60), st.text(min_size=1, max_size=60))
def test_two_different_placements_never_share_a_folder(a: str, b: str) -> None:
    if a != b:
        assert safe_component(a) != safe_component(b)


def test_a_document_goes_under_its_placement_with_an_ascii_name() -> None:
    path = document_path(
        "LENDERX_AGY_PLACEMENT_20260115_0003",
        "PL-AC1-1",
        2,
        "loan_contract",
        "借款合同 (扫描件).PDF",
        encrypted=True,
    )
    assert path == (
        f"LENDERX_AGY_PLACEMENT_20260115_0003{DOCUMENTS_SUFFIX}/PL-AC1-1/02_loan_contract.pdf.pgp"
    )
    # An extension that is not a plain one is dropped, never copied into the name.
    odd = document_path("B", "PL/../x", 1, "other", "a.p d f", encrypted=False)
    assert odd.startswith("B.documents/PL_.._x_") and odd.endswith("/01_other")
    assert ".." not in odd.split("/")


def _manifest(documents: tuple[ManifestDocument, ...]) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(
        Manifest(
            batch_id="B",
            sender="LENDERX",
            receiver="AGY",
            file_type="PLACEMENT",
            business_date=date(2026, 1, 15),
            seq=1,
            created_at=datetime(2026, 1, 15, 8, tzinfo=UTC),
            files=(ManifestFile("B.csv", 10, "a" * 64, "a" * 64, 1, "csv", "utf-8"),),
            case_count=1,
            documents=documents,
        ).render()
    )
    return body


def test_the_manifest_lists_documents_only_when_there_are_any() -> None:
    assert "documents" not in _manifest(()) and "document_count" not in _manifest(())["control"]
    doc = ManifestDocument(
        placement_id="PL-1",
        document_id=7,
        kind="authorisation_letter",
        name="授权委托书.pdf",
        media_type="application/pdf",
        path="B.documents/PL-1/01_authorisation_letter.pdf",
        size=100,
        plaintext_sha256="b" * 64,
        bytes=100,
        sha256="b" * 64,
    )
    body = _manifest((doc,))
    assert body["control"]["document_count"] == 1
    assert body["documents"] == [
        {
            "placement_id": "PL-1",
            "document_id": 7,
            "kind": "authorisation_letter",
            "name": "授权委托书.pdf",
            "media_type": "application/pdf",
            "path": "B.documents/PL-1/01_authorisation_letter.pdf",
            "size": 100,
            "plaintext_sha256": "b" * 64,
            "bytes": 100,
            "sha256": "b" * 64,
            "reference": None,
            "encryption": None,
            "recipient_fpr": None,
        }
    ]


def test_the_documents_a_packet_lists_are_read_from_its_bytes() -> None:
    packet = {
        "type": "placement.created",
        "data": {"placement_id": "PL-1", "documents": [{"document_id": 3}, {"document_id": 9}]},
    }
    payload = json.dumps(packet).encode()
    assert listed_documents(payload) == [ListedDocument("PL-1", 3), ListedDocument("PL-1", 9)]
    assert listed_document_ids(payload) == [3, 9]
    for nothing in (b"not json", b'{"data": {"placement_id": "PL-1"}}', b"[]"):
        assert listed_documents(nothing) == [] and listed_document_ids(nothing) == []


# -- Email: links ---------------------------------------------------------------------------


TARGET = LinkTarget("ZHENGYI", "PL-AC1-1", 42, 1_780_000_000)


def test_a_link_opens_only_for_what_it_was_signed_for_and_until_it_expires() -> None:
    sig = signature(KEY, TARGET)
    check_link(KEY, TARGET, sig, now=TARGET.expires - 1)
    for changed in (
        LinkTarget("OTHER", "PL-AC1-1", 42, TARGET.expires),
        LinkTarget("ZHENGYI", "PL-AC1-2", 42, TARGET.expires),
        LinkTarget("ZHENGYI", "PL-AC1-1", 43, TARGET.expires),
        LinkTarget("ZHENGYI", "PL-AC1-1", 42, TARGET.expires + 86_400),
    ):
        with pytest.raises(LinkRefused) as refused:
            check_link(KEY, changed, sig, now=0)
        assert refused.value.status == 403
    with pytest.raises(LinkRefused) as refused:
        check_link(b"x" * 32, TARGET, sig, now=0)
    assert refused.value.status == 403
    with pytest.raises(LinkRefused) as refused:
        check_link(KEY, TARGET, sig, now=TARGET.expires)
    assert refused.value.status == 410


def test_the_link_carries_the_placement_expiry_and_signature() -> None:
    url = link_url("https://gw.lender.cn/", KEY, TARGET)
    assert url.startswith("https://gw.lender.cn/v1/document-links/ZHENGYI/42?placement=PL-AC1-1&")
    assert url.endswith(f"&expires={TARGET.expires}&sig={signature(KEY, TARGET)}")


def test_links_expire_at_the_end_of_a_utc_day() -> None:
    now = datetime(2026, 3, 2, 9, 30, tzinfo=UTC).timestamp()
    expires = link_expiry(now, 14)
    assert datetime.fromtimestamp(expires, UTC) == datetime(2026, 3, 17, tzinfo=UTC)
    assert link_expiry(now + 3600, 14) == expires  # a resend the same day: the same links


# -- Email: what the body lists, and what the firm reads back --------------------------------


def _created() -> bytes:
    return render_created(
        agency_id="ZHENGYI",
        placement_id="PL-AC0000000001-1",
        case_id="AC0000000001",
        bucket="LEGAL",
        dpd=400,
        balance_minor=12_345_678,
        principal_minor=10_000_000,
        currency="CNY",
        due_date=date(2025, 1, 27),
        product="CASH_LOAN",
        credit_grade="E",
        debtor_id="CU0000000001",
        region="CN-31",
        pii=PII,
        allowed_fields=frozenset(),
        placed_at=datetime(2026, 3, 2, 9, 30, tzinfo=UTC),
        return_by=date(2026, 8, 29),
    ).payload


@pytest.mark.parametrize("language", ["zh", "en"])
def test_the_firm_reads_back_every_listed_document_with_its_hash_and_link(
    language: str,
) -> None:
    documents = [
        CaseDocument("authorisation_letter", "授权委托书 (1).pdf", "a" * 64, 10, b"x" * 10),
        CaseDocument(
            "loan_contract",
            "借款合同.pdf",
            "b" * 64,
            99,
            None,
            link_url("https://gw.test", KEY, TARGET),
            "2026-03-16",
        ),
        CaseDocument("other", "note.txt", "c" * 64, 5),
    ]
    case = mail_case(_created(), frozenset(), documents)
    content = render_content(
        template_environment(TEMPLATES),
        template="referral",
        language=language,
        cases=[case],
        firm_name="正义律师事务所",
        sender_name="贷方法务部",
        case_file_kind="csv",
    )
    read = firm_reads(content.text)
    assert [(d.name, d.sha256) for d in read] == [(d.filename, d.sha256) for d in documents]
    assert [d.link for d in read] == [None, documents[1].link, None]
    assert "2026-03-16" in content.text
    assert [a.filename for a in content.attachments if a.subtype == "pdf"] == ["授权委托书 (1).pdf"]


def test_the_removed_documents_dir_says_what_to_do() -> None:
    with pytest.raises(ValidationError) as error:
        EmailSection.model_validate(
            {
                "from_address": "a@lender.test",
                "message_id_domain": "lender.test",
                "to": ["b@firm.test"],
                "documents_dir": "var/documents",
                "smtp": {"host": "smtp.test"},
                "smime": {"sign_cert": {"file": "c"}, "sign_key": {"file": "k"}},
            }
        )
    assert "documents_dir was removed" in str(error.value)
    assert "[documents] store" in str(error.value)


def test_the_mail_names_the_letter_by_number_and_lists_documents_apart() -> None:
    packet = json.loads(_created())
    packet["data"]["authorisation"] = {
        "letter_no": "LX-2026-000123",
        "valid_from": "2026-03-02",
        "valid_until": "2026-08-29",
        "verify_url": "https://verify.lender.test/letters",
    }
    packet["data"]["documents"] = [
        {
            "document_id": 5,
            "kind": "authorisation_letter",
            "name": "授权委托书.pdf",
            "media_type": "application/pdf",
            "size": 10,
            "sha256": "a" * 64,
        }
    ]
    case = mail_case(json.dumps(packet).encode(), frozenset())
    assert case.fields["letter_no"] == "LX-2026-000123"
    assert case.fields["letter_valid_until"] == "2026-08-29"
    assert not any("document" in name for name in case.fields)


@pytest.mark.parametrize("language", ["zh", "en"])
def test_a_renewal_mail_lists_the_new_letter_and_a_balance_change_lists_nothing(
    language: str,
) -> None:
    def amended(return_by: date | None) -> bytes:
        return render_amended(
            agency_id="ZHENGYI",
            placement_id="PL-AC0000000001-1",
            case_id="AC0000000001",
            version=2,
            balance_minor=100,
            previous_balance_minor=200,
            currency="CNY",
            reason="renewal" if return_by else "balance",
            at=datetime(2026, 3, 2, 9, 30, tzinfo=UTC),
            return_by=return_by,
        ).payload

    letter = CaseDocument("authorisation_letter", "授权委托书-续期.pdf", "d" * 64, 12, b"y" * 12)

    def text(payload: bytes, documents: list[CaseDocument]) -> str:
        return render_content(
            template_environment(TEMPLATES),
            template="amendment",
            language=language,
            cases=[mail_case(payload, frozenset(), documents)],
            firm_name="正义律师事务所",
            sender_name="贷方法务部",
            case_file_kind="none",
        ).text

    renewal = text(amended(date(2026, 12, 31)), [letter])
    assert [(d.name, d.sha256) for d in firm_reads(renewal)] == [(letter.filename, "d" * 64)]
    balance = text(amended(None), [])
    assert firm_reads(balance) == [] and "sha256" not in balance
