"""Attribution packets on the wire: under ``lender_collects`` the reconciliation run that
first sees a debtor's receipt sends ``payment.direct`` (with the attribution) to the
agency holding the case and ``payment.attributed`` to an agency credited under its grace
window after a recall, both delivered by the real webhook adapter to the sandbox webhook
agency on loopback (SQLite, and PostgreSQL when configured)."""

import json
from collections.abc import Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from gateway.clock import ManualClock, to_datetime
from gateway.config.agencies import AgencyConfig, WebhookAgency
from gateway.config.settings import GatewaySettings
from gateway.dispatch.outbox import open_stored
from gateway.reconciliation.payment_feed import import_feed
from gateway.runtime import bound_socket
from gateway.store.database import sealer_of
from gateway.store.tables import OutboxItem
from tests.conftest import Seeder
from tests.sandbox_world import serve_sandbox

OUTBOX = OutboxItem.__table__  # type: ignore[attr-defined]
ConfigFactory = Callable[..., tuple[Path, GatewaySettings, dict[str, AgencyConfig]]]
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


async def test_direct_and_attributed_payments_reach_the_sandbox_agency(
    make_config: ConfigFactory, seed_placements: Seeder, database_url: str, tmp_path: Path
) -> None:
    sock = bound_socket("127.0.0.1", 0)
    _, settings, agencies = make_config(
        database_url=database_url,
        agencies={"AGY_PAY": {"url": f"http://127.0.0.1:{sock.getsockname()[1]}/hooks"}},
    )
    agency = agencies["AGY_PAY"]
    assert isinstance(agency, WebhookAgency)
    assert agency.settlement.money_model == "lender_collects", "the default"
    agency = agency.model_copy(
        update={"settlement": agency.settlement.model_copy(update={"grace_days": 5})}
    )
    agencies = {agency.id: agency}
    clock = ManualClock(START.timestamp())
    async with AsyncExitStack() as stack:
        sandbox, gateway = await serve_sandbox(stack, sock, settings, agencies, agency, clock)
        placed = await seed_placements(gateway.db, agencies, 2, clock)
        dispatcher = await gateway.dispatcher()
        assert (await dispatcher.drain_once()).delivered == 2
        (held, held_case, *_), (lost, lost_case, *_) = placed
        assert await gateway.placements.recall(lost_case, "PAID_DIRECT") == lost
        assert (await dispatcher.drain_once()).delivered == 1

        received = (START + timedelta(days=1)).isoformat()
        feed = tmp_path / "feed.csv"
        feed.write_text(
            "payment_id,kind,amount_minor,currency,received_at,case_id\n"
            f"R-HELD,debtor,30000,CNY,{received},{held_case}\n"
            f"R-GRACE,debtor,12345,CNY,{received},{lost_case}\n",
            encoding="utf-8",
        )
        clock.advance(2 * 86_400)
        imported = await import_feed(feed, db=gateway.db, now=to_datetime(clock.now()))
        assert imported.errors == []
        report = await gateway.recon_engine().run()
        assert report.run.counts["attributions"] == {
            "receipts": 2,
            "held": 1,
            "grace_old": 1,
            "packets": 2,
        }
        stats = await dispatcher.drain_once()
        assert (stats.delivered, stats.dead) == (2, 0)
        assert sandbox.stats.packets_by_type["payment.direct"] == 1
        assert sandbox.stats.packets_by_type["payment.attributed"] == 1
        assert dict(sandbox.stats.packets_refused) == {}
        assert sandbox.planner.cases[held].credited == 30_000

        async with gateway.db.connect() as conn:
            rows = await conn.execute(
                sa.select(OUTBOX.c.packet_type, OUTBOX.c.dedupe_key, OUTBOX.c.payload).where(
                    OUTBOX.c.packet_type.like("payment.%")
                )
            )
            sealer = sealer_of(conn)
            sent = {t: json.loads(open_stored(sealer, k, p))["data"] for t, k, p in rows.all()}
        assert sent["payment.direct"]["placement_id"] == held
        assert sent["payment.attributed"]["placement_id"] == lost
        assert sent["payment.attributed"]["attribution"] == {
            "rule": "grace_old",
            "share_bps": 10_000,
            "amount": {"amount_minor": 12_345, "currency": "CNY"},
        }
        again = await gateway.recon_engine().run()
        assert again.run.counts.get("attributions", {}).get("packets", 0) == 0
