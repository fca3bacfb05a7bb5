"""Through the composition root: with ``[lender]`` signing set up (``keys generate``), an
issued statement's PDF is signed with the lender's key (poppler's ``pdfsig``) and reads back
in Chinese (``pdftotext``)."""

from pathlib import Path
from typing import Any

import pytest

from gateway.config.commission import CommissionSection
from tests.case_world import AGENCY
from tests.integration.test_settlement_statements import MARCH
from tests.letters_world import build_letter_world, have_tools, pdfsig, pdftotext
from tests.settlement_world import SCHEDULE, seed

pytestmark = pytest.mark.skipif(have_tools() is not None, reason=str(have_tools()))


async def test_the_issued_pdf_is_signed_by_the_lender(make_config: Any, tmp_path: Path) -> None:
    world = await build_letter_world(
        make_config, tmp_path, "sqlite:///" + str(tmp_path / "letters.db")
    )
    gateway = world.gateway
    try:
        gateway.agencies[AGENCY] = gateway.agencies[AGENCY].model_copy(
            update={"commission": CommissionSection.model_validate(SCHEDULE)}
        )
        await seed(gateway.db, AGENCY, MARCH)
        statements = gateway.statements()
        sid = await statements.build(AGENCY, "2026-03", actor="ops:ann")
        sha = await statements.issue(sid, actor="ops:bob")
        name, pdf = await statements.document(sid, "pdf")
    finally:
        await gateway.aclose()
    path = tmp_path / name
    path.write_bytes(pdf)
    assert "Signature is Valid." in pdfsig(path)
    text = pdftotext(path)
    assert "佣金结算单" in text and sha in text
