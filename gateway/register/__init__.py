"""The agency register: who the lender has admitted, on what contract and qualifications,
and whether allocation may place with them today.

``standing`` is the pure core (an agency's standing on a day, the status transition table,
expiries, lapses and reminders due); ``store`` reads the register and changes it, each change
with its history row, evidence leaf and a new revision; ``gate`` is what allocation and
renewals ask; ``lapse`` is the job that gives expiry reminders and recalls a lapsed agency's
cases; ``register_file`` reads the register file ``register import`` loads.
"""

from typing import TYPE_CHECKING

from gateway.exports import lazy_exports

if TYPE_CHECKING:
    from gateway.register.gate import RegisterGate
    from gateway.register.lapse import CheckReport, check_register
    from gateway.register.standing import (
        TRANSITIONS,
        Qualification,
        RegisterEntry,
        Standing,
        standing,
    )
    from gateway.register.store import read_register, set_share, set_status

__all__ = [
    "TRANSITIONS",
    "CheckReport",
    "Qualification",
    "RegisterEntry",
    "RegisterGate",
    "Standing",
    "check_register",
    "read_register",
    "set_share",
    "set_status",
    "standing",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "TRANSITIONS": "gateway.register.standing",
        "CheckReport": "gateway.register.lapse",
        "Qualification": "gateway.register.standing",
        "RegisterEntry": "gateway.register.standing",
        "RegisterGate": "gateway.register.gate",
        "Standing": "gateway.register.standing",
        "check_register": "gateway.register.lapse",
        "read_register": "gateway.register.store",
        "set_share": "gateway.register.store",
        "set_status": "gateway.register.store",
        "standing": "gateway.register.standing",
    },
)
