"""A splitting TCP proxy for the tests: an asyncio relay that sits between two real programs on
loopback and forwards each direction in small pieces with short pauses, the way a slow or
congested network delivers a stream, so no protocol on either side may assume one read brings a
whole message. Piece sizes and pauses come from a seeded generator: a failing run can be repeated
exactly. It counts connections, bytes and pieces relayed in each direction, so a test can prove
its traffic crossed it. It shares no code with the gateway or its sandboxes (tests/hard_way.py
is the same idea for one HTTP request).
"""

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field

READ_SIZE = 65536
DRAIN_SECONDS = 30.0
"""How long one write may wait for the other side to read (a limit, never a timing assertion)."""


@dataclass
class Tally:
    """What crossed the proxy: ``up`` is client to server, ``down`` server to client."""

    connections: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    pieces_up: int = 0
    pieces_down: int = 0
    reads_up: int = 0
    reads_down: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def split(self) -> bool:
        """True when some read was forwarded in more than one piece in each direction."""
        return self.pieces_up > self.reads_up and self.pieces_down > self.reads_down


@dataclass(frozen=True)
class Splitting:
    """How the proxy cuts a stream: each piece ``1..max_piece`` bytes long, and before each piece
    a pause of ``0..max_pause`` seconds with probability ``pause_chance``."""

    max_piece: int = 7
    max_pause: float = 0.002
    pause_chance: float = 0.1


class SplittingProxy:
    """Listens on 127.0.0.1 (a free port unless given) and relays every connection to
    ``target_host:target_port``. Each direction of each connection draws from its own generator
    seeded from ``seed``, the connection's number and the direction, so the cuts do not depend
    on how the event loop interleaves connections."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        seed: int,
        splitting: Splitting = Splitting(),
        name: str = "",
    ) -> None:
        self.target = (target_host, target_port)
        self.seed = seed
        self.splitting = splitting
        self.name = name or f"{target_host}:{target_port}"
        self.tally = Tally()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None, "the proxy is not started"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self, port: int = 0) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", port)

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        number = self.tally.connections
        self.tally.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            try:
                server_r, server_w = await asyncio.open_connection(*self.target)
            except OSError as exc:
                self.tally.errors.append(f"{self.name}: connect: {exc}")
                client_w.close()
                return
            up = random.Random(f"{self.seed}:{number}:up")
            down = random.Random(f"{self.seed}:{number}:down")
            writers = (client_w, server_w)
            try:
                async with asyncio.TaskGroup() as group:
                    group.create_task(self._pump(client_r, server_w, up, writers, upstream=True))
                    group.create_task(self._pump(server_r, client_w, down, writers, upstream=False))
            finally:
                for writer in writers:
                    writer.close()
        finally:
            self._tasks.discard(task)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        rng: random.Random,
        writers: tuple[asyncio.StreamWriter, ...],
        *,
        upstream: bool,
    ) -> None:
        cut = self.splitting
        try:
            while data := await reader.read(READ_SIZE):
                if upstream:
                    self.tally.reads_up += 1
                else:
                    self.tally.reads_down += 1
                at = 0
                while at < len(data):
                    piece = data[at : at + rng.randint(1, cut.max_piece)]
                    at += len(piece)
                    if rng.random() < cut.pause_chance:
                        await asyncio.sleep(rng.uniform(0, cut.max_pause))
                    writer.write(piece)
                    async with asyncio.timeout(DRAIN_SECONDS):
                        await writer.drain()
                    if upstream:
                        self.tally.bytes_up += len(piece)
                        self.tally.pieces_up += 1
                    else:
                        self.tally.bytes_down += len(piece)
                        self.tally.pieces_down += 1
            # A half-close travels on: the other side sees the end of this direction only.
            if writer.can_write_eof() and not writer.is_closing():
                writer.write_eof()
        except (ConnectionError, TimeoutError) as exc:
            # One side hung up or stopped reading: hang up the other too, as a real network does
            # (closing a transport ends its reader, so the other direction stops as well).
            self.tally.errors.append(f"{self.name}: {type(exc).__name__}")
            for each in writers:
                each.close()


@asynccontextmanager
async def splitting_proxy(
    target_host: str, target_port: int, *, seed: int, name: str = "", **how: float | int
) -> AsyncIterator[SplittingProxy]:
    """A started ``SplittingProxy`` for the block; ``how`` overrides ``Splitting``'s fields."""
    proxy = SplittingProxy(
        target_host,
        target_port,
        seed=seed,
        splitting=Splitting(**how),  # type: ignore[arg-type]
        name=name,
    )
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.aclose()
