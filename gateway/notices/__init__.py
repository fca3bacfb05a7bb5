"""Borrower notices: tell the borrower who holds their case, how to verify the collector and
what personal information went to whom (PIPL), through the lender's messaging service.

``content`` renders a notice (wire model ``schemas.notices``, Jinja2 templates in Chinese and
English); ``scan`` finds placements without their notice and queues it in the outbox (recipient
``lender.notices``) with its evidence leaf; ``hooks`` marks notices delivered or failed from
the dispatcher's outcomes; ``service`` lists, counts and resends them.
"""

from typing import TYPE_CHECKING

from gateway.exports import lazy_exports

if TYPE_CHECKING:
    from gateway.notices.content import NOTICE_SENDER, NoticeTemplates
    from gateway.notices.hooks import NoticeHooks
    from gateway.notices.scan import NoticeScanner, ScanResult
    from gateway.notices.service import NoticeService

__all__ = [
    "NOTICE_SENDER",
    "NoticeHooks",
    "NoticeScanner",
    "NoticeService",
    "NoticeTemplates",
    "ScanResult",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "NOTICE_SENDER": "gateway.notices.content",
        "NoticeTemplates": "gateway.notices.content",
        "NoticeHooks": "gateway.notices.hooks",
        "NoticeScanner": "gateway.notices.scan",
        "ScanResult": "gateway.notices.scan",
        "NoticeService": "gateway.notices.service",
    },
)
