"""The console's login throttle under concurrency, on both databases: the attempt is counted
before the password is checked, in one serialised step, so parallel guesses gain nothing."""

import asyncio
from datetime import UTC, datetime, timedelta

from gateway.console import accounts
from gateway.errors import LoginRefused, LoginThrottled
from gateway.store.database import Database

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PASSWORD = "correct horse battery staple"
LIMIT, WINDOW = 5, timedelta(minutes=15)


async def attempt(db: Database, name: str, password: str, remote: str = "198.51.100.7") -> str:
    try:
        await accounts.login(
            db, name, password, remote=remote, now=NOW, max_failures=LIMIT, window=WINDOW
        )
    except LoginThrottled:
        return "throttled"
    except LoginRefused:
        return "refused"
    return "in"


async def test_forty_parallel_guesses_get_no_more_tries_than_the_limit(db: Database) -> None:
    await accounts.add_user(db, "olga", "admin", PASSWORD, now=NOW)
    guesses = [f"wrong guess number {n:02d}" for n in range(40)]
    guesses[30] = PASSWORD  # the attacker's right guess is among them

    outcomes = await asyncio.gather(*(attempt(db, "olga", guess) for guess in guesses))

    checked = [o for o in outcomes if o != "throttled"]
    assert len(checked) == LIMIT, outcomes  # passwords checked: exactly the limit
    assert outcomes.count("throttled") == 40 - LIMIT
    # And whatever the order, the account is locked now, right password or not.
    assert await attempt(db, "olga", PASSWORD) == "throttled"


async def test_another_users_success_does_not_reset_the_address_count(db: Database) -> None:
    await accounts.add_user(db, "olga", "admin", PASSWORD, now=NOW)
    address_limit = LIMIT * 4
    for n in range(address_limit - 1):  # spread over names so no one name is throttled
        assert await attempt(db, f"guess{n % 5}", "wrong password!!") == "refused"
    assert await attempt(db, "olga", PASSWORD) == "in"
    assert await attempt(db, "guess9", "wrong password!!") == "refused"
    # The address has failed address_limit times in the window: olga's success reset nothing.
    assert await attempt(db, "guess8", "wrong password!!") == "throttled"
    # Another address is not affected.
    assert await attempt(db, "olga", PASSWORD, remote="203.0.113.9") == "in"


async def test_a_success_resets_the_names_own_count(db: Database) -> None:
    await accounts.add_user(db, "olga", "admin", PASSWORD, now=NOW)
    for _ in range(LIMIT - 1):
        assert await attempt(db, "olga", "wrong password!!") == "refused"
    assert await attempt(db, "olga", PASSWORD) == "in"
    for _ in range(LIMIT - 1):
        assert await attempt(db, "olga", "wrong password!!") == "refused"
    # Eight failures in the window, but only four since the last success.
    assert await attempt(db, "olga", PASSWORD) == "in"
