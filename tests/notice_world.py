"""A gateway for the borrower-notice and verification tests: two registered webhook agencies,
the lender's registration, notices on (to the sandbox messaging service when a URL is given),
real intake and allocation, and authorisation letters written as the letter service writes
them (``authorisation_letters`` rows), since these tests are about what is done with them."""

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from gateway.bootstrap import build
from gateway.clock import ManualClock
from gateway.config.lender import Registration
from gateway.config.notices import NoticesSection
from gateway.signing import generate_hmac_secret
from gateway.store.document_tables import AuthorisationLetter
from gateway.store.migrate import upgrade
from tests.case_world import START, CaseWorld

AGENCIES = ("AGY_ONE", "AGY_TWO")
LETTERS = AuthorisationLetter.__table__  # type: ignore[attr-defined]
LENDER = Registration(
    legal_name="示例消费金融有限公司",
    legal_name_en="Example Consumer Finance Co., Ltd.",
    credit_code="91310000MA1FL12345",
    address="上海市浦东新区示例路1号",
    phone="400-800-0000",
)
REGISTRATIONS = {
    "AGY_ONE": Registration(
        legal_name="甲催收服务有限公司",
        legal_name_en="Alpha Collections Ltd.",
        credit_code="91310000MA1FL23456",
        address="上海市黄浦区一号路2号",
        phone="021-5555-0101",
    ),
    "AGY_TWO": Registration(
        legal_name="乙信息咨询有限公司",
        credit_code="91310000MA1FL34567",
        address="上海市静安区二号路3号",
        phone="021-5555-0202",
    ),
}


@dataclass
class NoticeWorld(CaseWorld):
    notice_secret: str = ""
    _letters: int = 0

    async def issue_letters(
        self, *, valid_days: int = 180, valid_from: date | None = None
    ) -> dict[str, str]:
        """An active letter for every open placement without one (the letter service
        issues them when it is configured); returns placement id → number of every active
        letter."""
        issued: dict[str, str] = {}
        async with self.db.transaction() as conn:
            lettered = sa.select(LETTERS.c.placement_id)
            rows = (
                await conn.execute(
                    sa.text(
                        "SELECT id, case_id, agency_id, placed_at FROM placements "
                        "WHERE state = 'placed' ORDER BY id"
                    )
                )
            ).all()
            have = set((await conn.execute(lettered)).scalars().all())
            for pid, case_id, agency_id, _placed_at in rows:
                if pid in have:
                    continue
                self._letters += 1
                number = f"SQ2026-{self._letters:06d}-{'ABCDEFGHJK'[self._letters % 10]}"
                start = valid_from or START.date()
                await conn.execute(
                    LETTERS.insert().values(
                        letter_no=number,
                        placement_id=pid,
                        case_id=case_id,
                        agency_id=agency_id,
                        valid_from=start,
                        valid_until=start + timedelta(days=valid_days),
                        status="active",
                        document_id=0,
                        issued_at=START,
                    )
                )
                issued[pid] = number
            active = await conn.execute(
                sa.select(LETTERS.c.placement_id, LETTERS.c.letter_no).where(
                    LETTERS.c.status == "active"
                )
            )
            issued.update({pid: number for pid, number in active.all()})
        return issued

    async def drop_letters(self) -> None:
        """Forget every letter (as if the letter service had not issued them yet)."""
        async with self.db.transaction() as conn:
            await conn.execute(LETTERS.delete())

    async def set_letter(self, letter_no: str, **values: Any) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                LETTERS.update().where(LETTERS.c.letter_no == letter_no).values(**values)
            )

    async def advance(self, seconds: float) -> datetime:
        self.clock.advance(seconds)
        return datetime.fromtimestamp(self.clock.now(), START.tzinfo)


async def build_notice_world(
    make_config: Any,
    tmp_path: Path,
    database_url: str,
    *,
    messaging_url: str | None = None,
    notices: dict[str, Any] | None = None,
    verification: dict[str, Any] | None = None,
) -> NoticeWorld:
    """The world (see the module docstring); the caller closes ``world.gateway``."""
    _config, settings, agencies = make_config(
        database_url=database_url,
        agencies={a: {"scheme": "v1", "url": "http://127.0.0.1:9/hooks"} for a in AGENCIES},
    )
    secret = generate_hmac_secret()
    key_file = settings.base_dir / "keys" / "notices.whsec"
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text(secret + "\n", encoding="utf-8")
    section = NoticesSection.model_validate(
        {
            "enabled": messaging_url is not None,
            "url": messaging_url,
            "allow_plain_http": True,
            "keys": [{"file": "keys/notices.whsec"}],
            "languages": ["zh-CN", "en"],
            "retry": {"max_attempts": 3, "base_seconds": 1, "cap_seconds": 2},
            **(notices or {}),
        }
    )
    update: dict[str, Any] = {
        "lender": settings.lender.model_copy(update={"registration": LENDER}),
        # A recalled case goes to the next agency at once (no cool-off) in these tests.
        "allocation": settings.allocation.model_copy(update={"cool_off_days": 0}),
        "notices": section,
        "verification": settings.verification.model_copy(update=verification or {}),
    }
    if hasattr(settings, "documents"):
        # Letters are written by the test itself (issue_letters), not the letter service.
        update["documents"] = settings.documents.model_copy(update={"letters": "off"})
    settings = settings.model_copy(update=update)
    # New cases go to AGY_ONE; a case returned from it moves to AGY_TWO, the next tier.
    tiers = {"AGY_ONE": "primary", "AGY_TWO": "secondary"}
    agencies = {
        a: config.model_copy(update={"registration": REGISTRATIONS[a], "tier": tiers[a]})
        for a, config in agencies.items()
    }
    clock = ManualClock(START.timestamp())
    gateway = build(settings, agencies, clock=clock)
    await upgrade(gateway.db)
    await gateway.inbound.start()
    return NoticeWorld(gateway, clock, tmp_path, notice_secret=secret)


__all__ = ["AGENCIES", "LENDER", "REGISTRATIONS", "NoticeWorld", "build_notice_world"]
