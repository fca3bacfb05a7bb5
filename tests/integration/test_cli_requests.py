"""Waiver, instalment and pause requests through the command line (click's runner, a real
config and SQLite file): `requests list|show|approve|reject`, the person named by `--as`, a
viewer and an unknown user refused, a rejection without a reason refused, and the
`request.decided` packet queued for the agency."""

import asyncio
import hashlib
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from gateway.bootstrap import build, load_config
from gateway.cli import main
from gateway.clock import to_datetime
from gateway.config.agencies import WebhookAgency
from gateway.keys import sandbox_keys
from gateway.signing import sign
from gateway.store.tables import Placement
from tests.case_world import account, write_intake

PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]

PASSWORD = "correct horse battery staple"
AGENCY = "AGY_ONE"


@pytest.fixture
def run(make_config: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    config_path, settings, _agencies = make_config(
        database_url="sqlite:///" + str(tmp_path / "cli.db"),
        agencies={AGENCY: {"scheme": "v1", "url": "http://127.0.0.1:9/hooks"}},
    )
    text = config_path.read_text(encoding="utf-8")
    config_path.write_text(text + '\n[claims]\nconfirmation = "off"\n', "utf-8")
    monkeypatch.chdir(settings.base_dir)
    monkeypatch.delenv("GATEWAY_OPS_USER", raising=False)
    monkeypatch.delenv("GATEWAY_OPS_TOKEN", raising=False)
    runner = CliRunner()

    def invoke(*args: str, stdin: str | None = None) -> Result:
        return runner.invoke(main, ["--config", str(config_path), *args], input=stdin)

    for name, role in (("ana", "operator"), ("bo", "admin"), ("vi", "viewer")):
        added = invoke("users", "add", name, "--role", role, "--password-stdin", stdin=PASSWORD)
        assert added.exit_code == 0, added.output
    invoke.config_path = config_path  # type: ignore[attr-defined]
    return invoke


async def post_events(config_path: Path, events: list[tuple[str, dict[str, Any]]]) -> None:
    """Sign ``events`` as the agency and receive them through the real inbound service."""
    settings, agencies = load_config(config_path, base_dir=config_path.parent)
    gateway = build(settings, agencies)
    try:
        await gateway.inbound.start()
        agency = agencies[AGENCY]
        assert isinstance(agency, WebhookAgency)
        _verify, signing = sandbox_keys(agency, settings.base_dir)
        for event_type, data in events:
            now = int(gateway.clock.now())
            body = json.dumps(
                {"type": event_type, "timestamp": f"{_iso(now)}", "data": data}
            ).encode()
            msg_id = "evt_" + hashlib.sha256(body).hexdigest()[:24]
            headers = [
                ("content-type", "application/json"),
                ("webhook-id", msg_id),
                ("webhook-timestamp", str(now)),
                ("webhook-signature", sign(msg_id, now, body, signing)),
            ]
            answer = await gateway.inbound.receive(AGENCY, headers, body)
            assert answer.status == 200, answer.body
    finally:
        await gateway.aclose()


async def placement_ids(config_path: Path) -> list[str]:
    settings, agencies = load_config(config_path, base_dir=config_path.parent)
    gateway = build(settings, agencies)
    try:
        async with gateway.db.connect() as conn:
            return list(
                (await conn.execute(sa.text("select id from placements order by id"))).scalars()
            )
    finally:
        await gateway.aclose()


async def placed_at(config_path: Path, placement_id: str) -> datetime:
    settings, agencies = load_config(config_path, base_dir=config_path.parent)
    gateway = build(settings, agencies)
    try:
        async with gateway.db.connect() as conn:
            found = (
                await conn.execute(
                    sa.select(PLACEMENTS.c.placed_at).where(PLACEMENTS.c.id == placement_id)
                )
            ).scalar_one()
        assert isinstance(found, datetime)
        return found.replace(microsecond=0)
    finally:
        await gateway.aclose()


def _iso(ts: int) -> str:
    return to_datetime(ts).isoformat()


def test_requests_are_listed_shown_and_decided_by_the_person_named(
    run: Any, tmp_path: Path
) -> None:
    write_intake(tmp_path / "day1.csv", [account(1), account(2)])
    assert run("--as", "ana", "intake", str(tmp_path / "day1.csv")).exit_code == 0
    placed = run("--as", "ana", "allocate", "--json")
    assert placed.exit_code == 0, placed.output
    pids = asyncio.run(placement_ids(run.config_path))
    events: list[tuple[str, dict[str, Any]]] = []
    for n, pid in enumerate(pids, 1):
        events.append(
            (
                "placement.acknowledged",
                {
                    "placement_id": pid,
                    "agency_case_ref": f"R-{n}",
                    "balance": {"amount_minor": 1, "currency": "CNY"},
                },
            )
        )
        events.append(
            (
                "waiver.requested",
                {
                    "placement_id": pid,
                    "request_id": f"RQ-{n}",
                    "waive_amount": {"amount_minor": 10_000, "currency": "CNY"},
                    "reason": "hardship",
                },
            )
        )
    asyncio.run(post_events(run.config_path, events))

    listed = json.loads(run("requests", "list", "--json").output)
    assert [(r["request_id"], r["state"], r["waive_minor"]) for r in listed] == [
        ("RQ-1", "pending", 10_000),
        ("RQ-2", "pending", 10_000),
    ]
    table = run("requests", "list")
    assert table.exit_code == 0 and "RQ-1" in table.output and "100.00" in table.output
    shown = run("requests", "show", f"{AGENCY}/RQ-1")
    assert shown.exit_code == 0 and "reason: hardship" in shown.output

    nobody = run("requests", "approve", f"{AGENCY}/RQ-1")
    assert nobody.exit_code == 1 and "--as" in nobody.output
    viewer = run("--as", "vi", "requests", "approve", f"{AGENCY}/RQ-1")
    assert viewer.exit_code == 1 and "vi is viewer" in viewer.output
    approved = run("--as", "ana", "requests", "approve", f"{AGENCY}/RQ-1", "--json")
    assert approved.exit_code == 0, approved.output
    assert (json.loads(approved.output)["state"], json.loads(approved.output)["decided_by"]) == (
        "approved",
        "ana",
    )
    no_reason = run("--as", "bo", "requests", "reject", str(listed[1]["id"]))
    assert no_reason.exit_code == 2 and "--reason" in no_reason.output
    rejected = run("--as", "bo", "requests", "reject", str(listed[1]["id"]), "--reason", "assets")
    assert rejected.exit_code == 0, rejected.output
    assert f"request {AGENCY}/RQ-2 rejected by bo; the agency is told" in rejected.output
    again = run("--as", "bo", "requests", "approve", f"{AGENCY}/RQ-2")
    assert again.exit_code == 1 and "is rejected; it cannot be approved" in again.output

    assert json.loads(run("requests", "list", "--json").output) == []
    every = json.loads(run("requests", "list", "--all", "--json").output)
    assert [r["state"] for r in every] == ["approved", "rejected"]


def test_attributions_resolve_keeps_or_refuses_and_names_why(run: Any, tmp_path: Path) -> None:
    """``attributions resolve``: the lender's decision on an agency's dispute of a lender
    receipt, by the person named: --keep dismisses the dispute and the rows count again;
    with no open dispute, or a move nowhere, it exits 1 saying why."""
    write_intake(tmp_path / "day1.csv", [account(1)])
    assert run("--as", "ana", "intake", str(tmp_path / "day1.csv")).exit_code == 0
    assert run("--as", "ana", "allocate", "--json").exit_code == 0
    [pid] = asyncio.run(placement_ids(run.config_path))
    feed = tmp_path / "feed.csv"
    received = (asyncio.run(placed_at(run.config_path, pid)) + timedelta(hours=1)).isoformat()
    feed.write_text(
        "payment_id,kind,amount_minor,currency,received_at,placement_id\n"
        f"RC-1,debtor,5000,CNY,{received},{pid}\n",
        encoding="utf-8",
    )
    assert run("payments", "import", str(feed)).exit_code == 0
    assert run("reconcile", "--json").exit_code == 0
    nothing = run("--as", "ana", "attributions", "resolve", "RC-1", "--keep", "--reason", "x")
    assert nothing.exit_code == 1 and "has no open attribution dispute" in nothing.output
    dispute = {"placement_id": pid, "receipt_id": "RC-1", "reason": "ours, and more"}
    asyncio.run(post_events(run.config_path, [("attribution.disputed", dispute)]))
    shown = json.loads(run("attributions", "show", "RC-1", "--json").output)
    assert [(r["state"], r["rule"]) for r in shown] == [("disputed", "held")]
    both = run("--as", "ana", "attributions", "resolve", "RC-1", "--reason", "x")
    assert both.exit_code == 2 and "--keep or --move-to" in both.output
    nowhere = run(
        "--as", "ana", "attributions", "resolve", "RC-1", "--move-to", pid, "--reason", "x"
    )
    assert nowhere.exit_code == 1 and f"no share to move to {pid}" in nowhere.output, nowhere.output
    kept = run(
        "--as", "ana", "attributions", "resolve", "RC-1", "--keep", "--reason", "our call",
        "--json",
    )  # fmt: skip
    assert kept.exit_code == 0, kept.output
    [done] = json.loads(kept.output)["done"]
    assert done["action"] == "dismiss" and done["details"] == {"released_attributions": 1}
    shown = json.loads(run("attributions", "show", "RC-1", "--json").output)
    assert [(r["state"], r["placement_id"]) for r in shown] == [("active", pid)]
