"""A dispatcher in its own OS process, for tests/integration/test_crash.py.

``python -m tests.integration.crash_worker <config dir>/gateway.toml`` builds the gateway from
the config (as ``agency-gateway`` would) and runs ``drain_once`` in a loop until the outbox
holds no ``pending`` or ``leased`` item, then exits 0. The test SIGKILLs one of these in the
middle of a batch and starts another to finish the work.
"""

import asyncio
import sys
from pathlib import Path

from gateway.bootstrap import build, load_config
from gateway.dispatch.outbox import counts_by_state


async def drain_until_settled(config_path: Path) -> int:
    settings, agencies = load_config(config_path, base_dir=config_path.parent)
    gateway = build(settings, agencies)
    try:
        dispatcher = await gateway.dispatcher()
        while True:
            stats = await dispatcher.drain_once()
            async with gateway.db.connect() as conn:
                counts = await counts_by_state(conn)
            if not counts.get("pending") and not counts.get("leased"):
                return 0
            if stats.claimed == 0:
                await asyncio.sleep(settings.dispatch.poll_interval_seconds)
    finally:
        await gateway.aclose()


if __name__ == "__main__":
    sys.exit(asyncio.run(drain_until_settled(Path(sys.argv[1]))))
