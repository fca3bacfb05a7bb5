"""The document pack on the law-firm email channel, through the composition root, a real
SMTP server (the sandbox law firm: STARTTLS, AUTH, S/MIME) and the gateway's own HTTP server:
the pack attached and each hash listed in the body, or, above the size limit, signed links
that work only while the placement is open with the firm."""

import hashlib
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import pytest
import sqlalchemy as sa

from gateway.bootstrap import Gateway, build
from gateway.clock import ManualClock
from gateway.runtime import web_server
from gateway.sandbox.dovecot import free_port
from gateway.sandbox.law_firm import SandboxLawFirm, listed_documents
from gateway.store.document_tables import DocumentFetch
from gateway.store.migrate import upgrade
from gateway.store.tables import Placement
from tests.integration.email_setup import FIRM, firm_of, list_store_documents, write_firm_config

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")

FETCHES = DocumentFetch.__table__  # type: ignore[attr-defined]
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC).timestamp()


@dataclass
class Loop:
    gateway: Gateway
    firm: SandboxLawFirm
    clock: ManualClock
    placed: list[str]
    files: dict[str, bytes]
    url: str


@asynccontextmanager
async def mail_loop(
    tmp_path: Path, database_url: str, seed_placements: Any, **email: Any
) -> AsyncIterator[Loop]:
    """Two placements with the firm, each listing a contract from the lender's store; the
    sandbox firm receiving; the gateway serving HTTP on the port ``[email.links]`` names."""
    base = tmp_path / "config"
    port = free_port()
    _, settings, agencies = write_firm_config(
        base,
        database_url=database_url,
        smtp_port=free_port(),
        imap_port=free_port(),
        email={
            "links": {"base_url": f"http://127.0.0.1:{port}", "key": {"file": "keys/links.key"}},
            **email,
        },
    )
    firm = SandboxLawFirm(agency=firm_of(agencies), base_dir=base, seed=3, fault_rate=0.0)
    await firm.start()
    agencies[FIRM] = firm.updated_agency()
    clock = ManualClock(START)
    gateway = build(settings, agencies, clock=clock)
    try:
        await upgrade(gateway.db)
        placed = [p[0] for p in await seed_placements(gateway.db, agencies, 2, clock)]
        files = {"借款合同.pdf": b"%PDF-1.4\n% contract\n" + os.urandom(4000)}
        await list_store_documents(gateway.db, base / "var" / "documents", placed, files)
        async with web_server(gateway, "127.0.0.1", port) as url:
            yield Loop(gateway, firm, clock, placed, files, url)
    finally:
        await gateway.aclose()
        await firm.aclose()


async def test_the_pack_is_attached_and_the_firm_checks_each_hash_against_the_body(
    tmp_path: Path, database_url: str, seed_placements: Any
) -> None:
    async with mail_loop(tmp_path, database_url, seed_placements) as loop:
        dispatcher = await loop.gateway.dispatcher()
        assert (await dispatcher.drain_once()).delivered == 2
        assert await loop.firm.drain(timeout=30)
        stats = loop.firm.stats
        assert stats.signatures_verified == 2
        assert (stats.documents_verified, stats.documents_downloaded) == (2, 0)
        assert stats.document_problems == [] and stats.documents_listed_only == 0


async def test_a_pack_over_the_limit_goes_as_links_that_die_with_the_placement(
    tmp_path: Path, database_url: str, seed_placements: Any
) -> None:
    async with mail_loop(
        tmp_path, database_url, seed_placements, max_attachment_bytes=1000
    ) as loop:
        dispatcher = await loop.gateway.dispatcher()
        assert (await dispatcher.drain_once()).delivered == 2
        assert await loop.firm.drain(timeout=30)
        stats = loop.firm.stats
        # Nothing attached: the firm downloaded each document by its link and checked it.
        assert (stats.documents_downloaded, stats.documents_verified) == (2, 2)
        assert stats.document_problems == []

        # The links, as the body lists them (the firm's clerk read the same text).
        [mail] = [m for m in await _bodies(loop) if loop.placed[0] in m]
        [doc] = listed_documents(mail)
        assert doc.link is not None and doc.sha256 == _sha(loop.files["借款合同.pdf"])
        async with aiohttp.ClientSession() as http:
            async with http.get(doc.link) as answer:
                body = await answer.read()
                assert answer.status == 200 and _sha(body) == doc.sha256
                assert answer.headers["Repr-Digest"].startswith("sha-256=:")
                assert "filename*=UTF-8''" in answer.headers["Content-Disposition"]
            # Another document id, placement or expiry under the same signature: refused.
            parts = urlsplit(doc.link)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            forged = {**query, "expires": str(int(query["expires"]) + 86_400)}
            async with http.get(f"{loop.url}{parts.path}?{urlencode(forged)}") as answer:
                assert answer.status == 403
            other = {**query, "placement": loop.placed[1]}
            async with http.get(f"{loop.url}{parts.path}?{urlencode(other)}") as answer:
                assert answer.status == 403
            async with http.get(f"{loop.url}/v1/document-links/NOBODY/1?{parts.query}") as answer:
                assert answer.status == 404
            # Recalled: the same link no longer opens.
            async with loop.gateway.db.transaction() as conn:
                await conn.execute(
                    PLACEMENTS.update()
                    .where(PLACEMENTS.c.id == loop.placed[0])
                    .values(state="recalled")
                )
            async with http.get(doc.link) as answer:
                problem = await answer.json(content_type=None)
                assert answer.status == 410
                assert "recalled" in problem["detail"]
            # Past its expiry, a link is gone even for an open placement.
            [other_doc] = listed_documents(
                next(m for m in await _bodies(loop) if loop.placed[1] in m)
            )
            assert other_doc.link is not None
            expires = int(parse_qs(urlsplit(other_doc.link).query)["expires"][0])
            loop.clock.advance(expires - loop.clock.now())
            async with http.get(other_doc.link) as answer:
                assert answer.status == 410
        async with loop.gateway.db.connect() as conn:
            outcomes = (await conn.execute(sa.select(FETCHES.c.outcome, FETCHES.c.status))).all()
        assert sorted(outcomes) == sorted(
            [("served", 200)] * 3 + [("unauthorised", 403)] * 2 + [("gone", 410)] * 2
        )


async def _bodies(loop: Loop) -> list[str]:
    """The text of every mail the firm received, decrypted."""
    return list(loop.firm.bodies)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
