"""The letter as a PDF: A4, Chinese text in an embedded TrueType CJK font, the QR code of the
verification link in the corner.

reportlab lays it out. The font is registered once per process (parsing a CJK font takes a
tenth of a second; each letter then embeds only the subset of glyphs it uses, ~20 KB), so a
letter costs a few tens of milliseconds (README "Authorisation letters" has the numbers).
Output is deterministic for the same content (``invariant``): no timestamps or random ids,
so the same letter renders to the same bytes before it is signed.

Which font: ``[lender] letter_font`` or the first of ``FONT_CANDIDATES`` that exists. These
are TrueType (glyf) fonts from Debian packages (fonts-wqy-microhei is installed by
``make install`` and CI); reportlab cannot embed the CFF-flavoured Noto CJK fonts.
"""

import io
import threading
from collections.abc import Sequence
from pathlib import Path

from reportlab import rl_config
from reportlab.graphics.barcode import qrencoder
from reportlab.lib.pagesizes import A4
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas

from gateway.errors import ConfigError
from gateway.letters.content import Block, LetterContent, Style, blocks

FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
)
FONT_PACKAGE = "fonts-wqy-microhei"

_SIZES: dict[Style, tuple[float, float]] = {
    # style: (font size, line height) in points
    "title": (22, 34),
    "heading": (12, 20),
    "body": (11, 18),
    "small": (9, 15),
}
_QR_MASK = 2
_NO_LINE_START = frozenset("。，、；：\uff1f\uff01）》」』\u201d\u2019,.;:?!)")
_MARGIN = 56.0
_QR_SIZE = 78.0
# Streams are Flate-compressed binary; ASCII85 on top (reportlab's default) only makes the
# file bigger and costs a sixth of the render. A process-wide reportlab setting: letters
# are the only PDFs the gateway makes.
rl_config.useA85 = 0
_lock = threading.Lock()
_registered: dict[str, str] = {}


def find_font(configured: str | None) -> Path:
    """The CJK font file to embed; ConfigError saying what to install when there is none."""
    if configured is not None:
        path = Path(configured)
        if not path.is_file():
            raise ConfigError(f"[lender] letter_font: {path} does not exist")
        return path
    for candidate in FONT_CANDIDATES:
        if Path(candidate).is_file():
            return Path(candidate)
    raise ConfigError(
        "authorisation letters need a TrueType CJK font and none was found "
        f"({', '.join(FONT_CANDIDATES)}): install the Debian package {FONT_PACKAGE} "
        "(`make install` does it as root) or set [lender] letter_font"
    )


def register_font(path: Path) -> str:
    """Register ``path`` with reportlab once per process; the name to draw with."""
    key = str(path)
    with _lock:
        name = _registered.get(key)
        if name is None:
            name = f"LetterCJK{len(_registered)}"
            try:
                pdfmetrics.registerFont(TTFont(name, key, subfontIndex=0))
            except Exception as exc:  # reportlab raises TTFError and plain errors alike
                raise ConfigError(f"[lender] letter_font: {path} is not usable: {exc}") from exc
            _registered[key] = name
    return name


class LetterRenderer:
    """Renders ``LetterContent`` to unsigned PDF bytes with one registered font."""

    def __init__(self, font: Path) -> None:
        self._font = register_font(font)
        self._widths: dict[tuple[str, float], float] = {}

    def _width(self, ch: str, size: float) -> float:
        key = (ch, size)
        width = self._widths.get(key)
        if width is None:
            width = self._widths[key] = pdfmetrics.stringWidth(ch, self._font, size)
        return width

    def wrap(self, text: str, size: float, width: float) -> list[str]:
        """``text`` broken into lines no wider than ``width`` (CJK breaks anywhere; a Latin
        word is kept whole when it fits on a line)."""
        lines: list[str] = []
        line: list[str] = []
        used = 0.0
        for token in _tokens(text):
            w = sum(self._width(ch, size) for ch in token)
            if token in _NO_LINE_START and line:
                # Chinese typesetting never starts a line with closing punctuation: let it
                # hang past the margin instead.
                line.append(token)
                used += w
                continue
            if used + w > width and line:
                lines.append("".join(line).rstrip())
                line, used = [], 0.0
                if token == " ":
                    continue
            if w > width:  # a token longer than a line (a URL): break it by character
                for ch in token:
                    cw = self._width(ch, size)
                    if used + cw > width and line:
                        lines.append("".join(line))
                        line, used = [], 0.0
                    line.append(ch)
                    used += cw
                continue
            line.append(token)
            used += w
        if line:
            lines.append("".join(line).rstrip())
        return lines

    def render(self, content: LetterContent) -> bytes:
        """The unsigned PDF of one letter."""
        buf = io.BytesIO()
        canvas = Canvas(buf, pagesize=A4, invariant=True, pageCompression=1)
        canvas.setTitle(f"授权委托书 {content.letter_no}")
        canvas.setAuthor(content.lender.legal_name)
        canvas.setSubject(f"{content.placement_id} {content.agency.legal_name}")
        for number, page in enumerate(blocks(content)):
            self._page(canvas, page, content, qr=number == 0)
            canvas.showPage()
        canvas.save()
        return buf.getvalue()

    def _page(
        self, canvas: Canvas, page: Sequence[Block], content: LetterContent, *, qr: bool
    ) -> None:
        width, height = A4
        y = height - _MARGIN
        if qr:
            _draw_qr(canvas, content.verify_link, width - _MARGIN - _QR_SIZE, y - _QR_SIZE)
        for block in page:
            size, leading = _SIZES[block.style]
            canvas.setFont(self._font, size)
            if block.style == "title":
                y -= leading
                canvas.drawCentredString(width / 2, y, block.text)
                y -= 6
                continue
            avail = width - 2 * _MARGIN
            if y > height - _MARGIN - _QR_SIZE - 8 and qr:
                avail -= _QR_SIZE + 12  # flow around the QR code
            for line in self.wrap(block.text, size, avail):
                y -= leading
                canvas.drawString(_MARGIN, y, line)
            if block.style == "heading":
                y -= 2


def _tokens(text: str) -> list[str]:
    """Latin words and single spaces kept whole, every other character on its own."""
    out: list[str] = []
    word = ""
    for ch in text:
        if ch.isascii() and not ch.isspace():
            word += ch
            continue
        if word:
            out.append(word)
            word = ""
        out.append(" " if ch.isspace() and ch.isascii() else ch)
    if word:
        out.append(word)
    return out


def _draw_qr(canvas: Canvas, text: str, x: float, y: float) -> None:
    """The QR code of ``text`` as one filled path (a rectangle per horizontal run of dark
    modules, a quiet zone of two modules), ``_QR_SIZE`` points square with its lower left
    at (x, y). The mask pattern is fixed: any of the eight is a valid code that every reader
    decodes, and scoring all eight for the "best" one cost a quarter of a letter's render."""
    code = qrencoder.QRCode(None, qrencoder.QRErrorCorrectLevel.M)
    code.addData(text)
    code.version = code.calculate_version()  # type: ignore[no-untyped-call]
    code.makeImpl(False, _QR_MASK)
    modules: list[list[bool | None]] = code.modules
    count = len(modules)
    module = _QR_SIZE / (count + 4)
    path = canvas.beginPath()
    for row, cells in enumerate(modules):
        top = y + (count + 1 - row) * module
        col = 0
        while col < count:
            if not cells[col]:
                col += 1
                continue
            run = col
            while run < count and cells[run]:
                run += 1
            path.rect(x + (col + 2) * module, top, (run - col) * module, module)
            col = run
    canvas.drawPath(path, stroke=0, fill=1)


__all__ = ["FONT_CANDIDATES", "FONT_PACKAGE", "LetterRenderer", "find_font", "register_font"]
