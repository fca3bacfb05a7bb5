"""File batches (pure): names, temporary names, what a poller takes, manifests, settings."""

import json
from datetime import UTC, date, datetime

import pytest
from pydantic import ValidationError

from adapters.sftp.batches import (
    FILE_TYPES,
    PACKET_TYPES,
    Manifest,
    ManifestFile,
    ManifestInvalid,
    base_of,
    batch_names,
    checksum_line,
    classify,
    dated_folder,
    is_temporary,
    read_manifest,
    temp_path,
)
from gateway.config.layouts import DEFAULT_COLUMNS, LayoutSection
from gateway.config.sftp import NamingSection, SftpSection
from schemas.packets import PACKET_TYPES as WIRE_PACKET_TYPES

NAMING = NamingSection(sender="LENDERX", checksum_sidecar=True)


def test_names_follow_the_convention_and_sort_by_date_and_sequence() -> None:
    names = batch_names(
        NAMING,
        receiver="AGY017",
        file_type="PLACEMENT",
        business_date=date(2026, 1, 15),
        seq=3,
        extension="csv",
        encrypted=True,
    )
    assert names.data == "LENDERX_AGY017_PLACEMENT_20260115_0003.csv.pgp"
    assert names.manifest == "LENDERX_AGY017_PLACEMENT_20260115_0003.manifest.json"
    assert names.done == "LENDERX_AGY017_PLACEMENT_20260115_0003.done"
    assert names.checksum == "LENDERX_AGY017_PLACEMENT_20260115_0003.csv.pgp.sha256"
    assert base_of(names.data) == names.base == base_of(names.manifest)
    assert temp_path(NAMING, f"inbox/{names.data}") == f"inbox/.{names.data}.part"


def test_every_packet_type_has_a_file_type_and_default_columns() -> None:
    assert set(FILE_TYPES) == set(WIRE_PACKET_TYPES)
    assert set(FILE_TYPES) <= set(DEFAULT_COLUMNS)
    assert PACKET_TYPES["DELETION"] == "data.deletion_requested"
    names = batch_names(
        NAMING,
        receiver="AGY017",
        file_type=FILE_TYPES["data.deletion_requested"],
        business_date=date(2026, 2, 1),
        seq=1,
        extension="csv",
        encrypted=False,
    )
    assert names.data == "LENDERX_AGY017_DELETION_20260201_0001.csv"
    assert classify(names.data, NAMING) is None, "our own files are never picked up"


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("AGY_LENDERX_RESULT_20260116_0001.csv", "result"),
        ("AGY_LENDERX_STATEMENT_20260131_0001.csv.pgp", "statement"),
        (".AGY_LENDERX_RESULT_20260116_0001.csv.part", None),
        ("AGY_LENDERX_RESULT_20260116_0001.csv.filepart", None),
        ("AGY_LENDERX_RESULT_20260116_0001.csv.tmp", None),
        (".sftpgo-upload.abc.AGY_LENDERX_RESULT_20260116_0001.csv", None),
        ("AGY_LENDERX_RESULT_20260116_0001.manifest.json", None),
        ("AGY_LENDERX_RESULT_20260116_0001.done", None),
        ("AGY_LENDERX_RESULT_20260116_0001.csv.sha256", None),
        ("notes.txt", None),
    ],
)
def test_pollers_take_only_finished_result_and_statement_files(name: str, kind: str | None) -> None:
    assert classify(name, NAMING) == kind
    if name.startswith(".") or name.endswith((".part", ".filepart", ".tmp")):
        assert is_temporary(name, NAMING)


def test_a_manifest_renders_deterministically_and_reads_back() -> None:
    manifest = Manifest(
        batch_id="LENDERX_AGY017_PLACEMENT_20260115_0003",
        sender="LENDERX",
        receiver="AGY017",
        file_type="PLACEMENT",
        business_date=date(2026, 1, 15),
        seq=3,
        created_at=datetime(2026, 1, 15, 8, 30, tzinfo=UTC),
        files=(
            ManifestFile(
                name="LENDERX_AGY017_PLACEMENT_20260115_0003.csv.pgp",
                bytes=2048,
                sha256="a" * 64,
                plaintext_sha256="b" * 64,
                record_count=2,
                layout="csv",
                encoding="gb18030",
                encryption="openpgp",
                recipient_fpr="C" * 40,
            ),
        ),
        case_count=2,
        totals={"CNY": 300, "USD": 7},
        resend_of=("LENDERX_AGY017_PLACEMENT_20260115_0001.csv.pgp",),
    )
    body = manifest.render()
    assert body == manifest.render()
    document = json.loads(body)
    assert document["control"] == {
        "case_count": 2,
        "record_count": 2,
        "total_outstanding_minor": [
            {"currency": "CNY", "amount_minor": 300},
            {"currency": "USD", "amount_minor": 7},
        ],
    }
    assert document["created_at"] == "2026-01-15T08:30:00Z"
    assert document["resend_of"] == ["LENDERX_AGY017_PLACEMENT_20260115_0001.csv.pgp"]
    entry = read_manifest(body)["LENDERX_AGY017_PLACEMENT_20260115_0003.csv.pgp"]
    assert (entry.bytes, entry.sha256, entry.record_count) == (2048, "a" * 64, 2)


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"files": {}}', b'{"files": [{"name": "x", "sha256": "XYZ"}]}'],
)
def test_an_unreadable_manifest_is_refused(body: bytes) -> None:
    with pytest.raises(ManifestInvalid):
        read_manifest(body)


def test_sidecars_and_archive_folders() -> None:
    assert checksum_line("F.csv", "0" * 64) == b"0" * 64 + b"  F.csv\n"
    assert dated_folder("archive", date(2026, 1, 5)) == "archive/2026/01/05"


def sftp(**overrides: object) -> SftpSection:
    values: dict[str, object] = {
        "host": "sftp.agency.example",
        "username": "lenderx",
        "client_key": {"file": "k"},
        "naming": {"sender": "LENDERX"},
        "host_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE5pZ2h0IGZhbGxzIG9uIHRoZSBnYXRld2F5"],
    }
    values.update(overrides)
    return SftpSection.model_validate(values)


def test_an_agency_without_a_pinned_host_key_is_refused() -> None:
    with pytest.raises(ValidationError, match="no pinned host key"):
        sftp(host_keys=[])


@pytest.mark.parametrize(
    ("naming", "message"),
    [
        ({"sender": "LENDERX", "pattern": "{sender}_{type}"}, "must contain"),
        ({"sender": "LENDERX", "pattern": "{sender} {date:%Y%m%d}_{seq}"}, "upper case"),
        ({"sender": "lenderx"}, "sender"),
    ],
)
def test_file_name_patterns_are_checked_when_the_config_loads(
    naming: dict[str, str], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        sftp(naming=naming)


def test_fixed_width_layouts_need_a_width_for_every_column() -> None:
    with pytest.raises(ValidationError, match="need a width"):
        LayoutSection(format="fixed")
    with pytest.raises(ValidationError, match="always utf-8"):
        LayoutSection(format="jsonl", encoding="gb18030")


def test_a_manifest_number_that_is_not_an_integer_is_not_checked_against() -> None:
    """``true`` is not a size and ``2.0`` not a count: such entries say nothing we verify
    (rather than a file of one byte, or a count compared as a float)."""
    body = json.dumps(
        {"files": [{"name": "R.csv", "bytes": True, "record_count": 2.0, "sha256": None}]}
    ).encode()
    entry = read_manifest(body)["R.csv"]
    assert (entry.bytes, entry.sha256, entry.record_count) == (None, None, None)
