"""``attribution.disputed`` over the law-firm email channel, against real servers on
loopback (aiosmtpd, a throwaway Dovecot over IMAPS): a signed reply whose sheet has a
``归属异议`` row (the receipt in ``payment_id``, the claim in ``amount``) becomes the event,
which marks the receipt's attribution and opens the mismatch. Skipped where Dovecot cannot
be started."""

import pytest

from gateway.sandbox.dovecot import unavailable_reason
from tests.attribution_world import (
    RECEIPT,
    attributed_receipt,
    check_dispute,
    disputes,
)
from tests.integration.email_setup import FIRM
from tests.integration.test_email_replies import (
    World,
    placement_of,
    reply,
    shared_dovecot,
    sheet,
    world,
)

__all__ = ["shared_dovecot", "world"]

pytestmark = pytest.mark.skipif(
    unavailable_reason() is not None, reason=f"no Dovecot: {unavailable_reason()}"
)


async def test_a_dispute_row_in_a_reply_sheet_opens_the_mismatch(world: World) -> None:
    sent = world.sent[0]
    pid = placement_of(sent)
    await attributed_receipt(world.db, world.base, placement_id=pid, agency_id=FIRM)
    raw = reply(
        sent,
        sheet=sheet(f'归属异议,{pid},2026-03-03,,,,,{RECEIPT},"100.00",CNY,我所承诺后债务人还款'),
    )
    await world.append(raw)
    assert (await world.reader.poll()).kinds == {"reply": 1}
    mismatches, states = await disputes(world.db)
    check_dispute(mismatches, states, placement_id=pid, agency_id=FIRM)
