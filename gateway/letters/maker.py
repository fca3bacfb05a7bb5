"""Making a letter's bytes: render (``gateway.letters.render``), then sign
(``gateway.letters.signing``). CPU only, no store and no event loop.

``LetterMaker`` lives for the process: the font is registered and the key parsed once.
``init_worker`` / ``make_in_worker`` run it in a ``ProcessPoolExecutor`` for big batches
(``LetterService(workers=N)``); the spec travels to the workers once, at their start.
"""

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.letters.content import LetterContent
from gateway.letters.render import LetterRenderer
from gateway.letters.signing import LetterSigner


@dataclass(frozen=True, slots=True)
class MakerSpec:
    """What a maker needs: the font file and the PEM signing material."""

    font: str
    chain_pem: str
    key_pem: str
    where: str

    def __repr__(self) -> str:  # never print the key
        return f"MakerSpec(font={self.font!r}, where={self.where!r})"


class LetterMaker:
    """Renders and signs letters."""

    def __init__(self, renderer: LetterRenderer, signer: LetterSigner) -> None:
        self.renderer = renderer
        self.signer = signer
        # reportlab keeps a document's font subset on the shared font object: one letter
        # at a time per process (the pool's processes each have their own maker).
        self._lock = threading.Lock()

    @classmethod
    def build(cls, spec: MakerSpec) -> "LetterMaker":
        return cls(
            LetterRenderer(Path(spec.font)),
            LetterSigner.from_pem(spec.chain_pem, spec.key_pem, where=spec.where),
        )

    def make(self, content: LetterContent) -> bytes:
        """The signed PDF of one letter."""
        return self.signer.sign(self.renderer.render(content))

    def make_all(self, contents: Sequence[LetterContent]) -> list[bytes]:
        with self._lock:
            return [self.make(c) for c in contents]


_worker: LetterMaker | None = None


def init_worker(spec: MakerSpec) -> None:
    """Process-pool initializer: build this worker's maker."""
    global _worker
    _worker = LetterMaker.build(spec)


def make_in_worker(contents: Sequence[LetterContent]) -> list[bytes]:
    """Process-pool task: the signed PDFs of ``contents``."""
    assert _worker is not None, "init_worker did not run"
    return _worker.make_all(contents)


__all__ = ["LetterMaker", "MakerSpec", "init_worker", "make_in_worker"]
