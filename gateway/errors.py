"""The one error tree of the gateway core.

::

    GatewayError
    ├── ConfigError               a settings or agency file is wrong (file, key, reason)
    ├── IntakeError               an intake row failed validation (file, line, field)
    ├── InboundError              an inbound message is refused; carries the HTTP status
    │   ├── UnknownAgency             404  no agency with that id on that channel
    │   ├── SignatureInvalid          401  no signature matched a trusted key
    │   ├── TimestampOutOfTolerance   401  webhook-timestamp outside the window
    │   ├── MissingHeaders            400  a webhook-* header is missing or malformed
    │   ├── PayloadTooLarge           413  body over the configured limit
    │   ├── MalformedPayload          400  body is not JSON
    │   ├── SchemaViolation           422  JSON does not match the event schema
    │   │   └── SettlementAnswerRefused  422  a settlement confirmation/dispute names another
    │   │                                      revision or hash, a line it lacks, or a locked one
    │   ├── ConflictingDuplicate      409  same webhook-id, different bytes
    │   ├── ForeignPlacement          403  the event names a placement the agency does not hold
    │   ├── DocumentNotFound          404  no such document in a placement the agency holds
    │   ├── DocumentGone              410  the placement has ended: its documents are withdrawn
    │   ├── DocumentUnavailable       503  the stored copy failed its check; retry later
    │   └── StoreUnavailable          503  the database is unavailable; retry later
    ├── DeliveryError             a send to an agency failed; carries agency_id
    │   ├── TransientDeliveryError    worth retrying (timeouts, 5xx, 429, connection loss)
    │   │   └── ThrottledError            the agency asked us to slow down (429/503, Retry-After)
    │   ├── PermanentDeliveryError    never retried (4xx, redirects, rejected payload)
    │   │   └── EndpointGone              410: the endpoint is disabled until ops re-enables it
    │   │       └── HostKeyChanged            the server's host key is not the pinned one
    │   └── OutcomeUnknown            the bytes may have left; resend only by the channel's rule
    ├── LeaseLost                 our claim on an outbox item was taken over (fencing)
    ├── NotFound                  a case, placement or mismatch id does not exist
    ├── EvidenceError             the evidence log does not verify
    ├── RunInProgress             a reconciliation run is still running (or waits for a resume)
    ├── RoleHeld                  another process holds a cluster role (e.g. an allocation round)
    ├── PgpError                  gpg refused to encrypt, decrypt or verify (SFTP files)
    ├── DocumentError             a document of the lender's store is unsafe or unreadable
    │   └── DocumentChanged           its bytes no longer match the SHA-256 recorded at intake
    ├── SettlementError           a commission schedule cannot rate a line, or a statement
    │                                 refuses a change in its state (e.g. confirmed: locked)
    ├── ActionRefused             a mismatch action is not allowed in the mismatch's state
    │   ├── FourEyesRefused           the second-person rule refuses it (maker = checker, role)
    │   ├── ApprovalRequired          a second person must approve first (carries approval_id)
    │   ├── ConcessionRefused         a waiver, plan or pause request cannot be decided that way
    │   ├── ComplaintRefused          a complaint cannot move that way (its state, an outcome)
    │   ├── QaRefused                 a QA sample item cannot take that review in its state
    │   ├── RegisterRefused           a register change is not allowed (blacklisted is final),
    │   │                                 or the agency may not take or keep cases now
    │   └── EvaluationRefused         an annual evaluation's decision cannot be made that way
    └── LoginRefused              console login: wrong name or password
        └── LoginThrottled            too many failed logins; wait and try again

Each class's docstring is its default message. Transient vs permanent is a type, not a flag:
the dispatcher retries ``TransientDeliveryError`` only.
"""


class GatewayError(Exception):
    """The gateway failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigError(GatewayError):
    """The configuration is invalid."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class IntakeError(GatewayError):
    """An intake row is invalid."""


class InboundError(GatewayError):
    """The inbound message was refused."""

    status = 400
    slug = "bad-request"
    title = "Bad request"


class UnknownAgency(InboundError):
    """No agency with that id receives events on this channel."""

    status = 404
    slug = "unknown-agency"
    title = "Unknown agency"


class SignatureInvalid(InboundError):
    """No webhook-signature matched a key this agency is trusted with."""

    status = 401
    slug = "invalid-signature"
    title = "Invalid signature"


class TimestampOutOfTolerance(InboundError):
    """The webhook-timestamp is outside the accepted window."""

    status = 401
    slug = "stale-timestamp"
    title = "Timestamp outside tolerance"


class MissingHeaders(InboundError):
    """A webhook-id, webhook-timestamp or webhook-signature header is missing or malformed."""

    status = 400
    slug = "missing-headers"
    title = "Missing or malformed webhook headers"


class PayloadTooLarge(InboundError):
    """The request body is larger than the configured limit."""

    status = 413
    slug = "payload-too-large"
    title = "Payload too large"


class MalformedPayload(InboundError):
    """The request body is not valid UTF-8 JSON."""

    status = 400
    slug = "malformed-json"
    title = "Malformed JSON"


class SchemaViolation(InboundError):
    """The event does not match its schema."""

    status = 422
    slug = "schema-violation"
    title = "Event does not match its schema"

    def __init__(self, message: str | None = None, errors: list[dict[str, str]] | None = None):
        super().__init__(message)
        self.errors = errors or []


class ConflictingDuplicate(InboundError):
    """This webhook-id was already received with different content."""

    status = 409
    slug = "conflicting-duplicate"
    title = "Conflicting duplicate"


class ForeignPlacement(InboundError):
    """The event names a placement that this agency does not hold."""

    status = 403
    slug = "foreign-placement"
    title = "Placement not held by this agency"


class SettlementAnswerRefused(SchemaViolation):
    """The settlement statement cannot take this confirmation or dispute."""

    status = 422
    slug = "settlement-answer-refused"
    title = "Settlement answer refused"


class DocumentNotFound(InboundError):
    """No such document in a placement this agency holds."""

    status = 404
    slug = "document-not-found"
    title = "Document not found"


class DocumentGone(InboundError):
    """The placement has ended; its documents can no longer be fetched."""

    status = 410
    slug = "document-gone"
    title = "Document gone"


class DocumentUnavailable(InboundError):
    """The document cannot be served now: its stored copy failed its check. Retry later."""

    status = 503
    slug = "document-unavailable"
    title = "Document unavailable"


class StoreUnavailable(InboundError):
    """The gateway could not store the message; retry later."""

    status = 503
    slug = "store-unavailable"
    title = "Temporarily unable to store"


class DeliveryError(GatewayError):
    """Sending to the agency failed."""

    def __init__(
        self, message: str | None = None, *, agency_id: str = "", status: int | None = None
    ) -> None:
        super().__init__(message)
        self.agency_id = agency_id
        self.status = status


class TransientDeliveryError(DeliveryError):
    """Sending failed for a reason that may pass; it will be retried."""

    def __init__(
        self,
        message: str | None = None,
        *,
        agency_id: str = "",
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, agency_id=agency_id, status=status)
        self.retry_after = retry_after


class ThrottledError(TransientDeliveryError):
    """The agency asked us to slow down."""


class PermanentDeliveryError(DeliveryError):
    """The agency refused the packet; retrying will not help."""


class EndpointGone(PermanentDeliveryError):
    """The agency endpoint answered 410 Gone; it stays disabled until ops re-enables it."""


class HostKeyChanged(EndpointGone):
    """The agency's server presented a host key that is not pinned; dispatch to it stopped."""


class OutcomeUnknown(DeliveryError):
    """The packet may have reached the agency; the outcome is unknown."""


class LeaseLost(GatewayError):
    """Another worker took over this outbox item; our result was discarded."""


class NotFound(GatewayError):
    """No such record."""


class EvidenceError(GatewayError):
    """The evidence log does not verify."""


class RunInProgress(GatewayError):
    """Another reconciliation run is running, or was interrupted and waits for a resume."""


class RoleHeld(GatewayError):
    """Another process holds this role of the cluster; try again once it is done."""


class PgpError(GatewayError):
    """gpg refused to encrypt, decrypt or verify."""


class DocumentError(GatewayError):
    """A document of the lender's store is unsafe (a link, a path leaving the store) or
    unreadable."""


class DocumentChanged(DocumentError):
    """A document's bytes no longer match the size and SHA-256 recorded when it was hashed."""


class SettlementError(GatewayError):
    """The settlement statement or commission schedule refuses this."""


class ActionRefused(GatewayError):
    """The action is not allowed for this mismatch as it stands now."""


class FourEyesRefused(ActionRefused):
    """The four-eyes rule refuses this: the maker cannot be the checker, and the checker
    must be a known user of a permitted role."""


class ApprovalRequired(ActionRefused):
    """This action needs a second person's approval before it runs."""

    def __init__(self, message: str | None = None, *, approval_id: int | None = None) -> None:
        super().__init__(message)
        self.approval_id = approval_id


class ComplaintRefused(ActionRefused):
    """The complaint cannot move that way in its state."""


class QaRefused(ActionRefused):
    """The QA sample item cannot take that action in its state."""


class ConcessionRefused(ActionRefused):
    """The waiver, instalment or pause request cannot be decided that way."""


class RegisterRefused(ActionRefused):
    """The agency register refuses this: the status change is not allowed, or the agency's
    standing (status, contract, qualifications) does not let it take cases now."""


class EvaluationRefused(ActionRefused):
    """The annual evaluation's decision cannot be proposed or approved in its state."""


class LoginRefused(GatewayError):
    """Wrong name or password."""


class LoginThrottled(LoginRefused):
    """Too many failed logins; wait and try again."""


__all__ = [
    "ActionRefused",
    "ApprovalRequired",
    "ComplaintRefused",
    "ConcessionRefused",
    "ConfigError",
    "ConflictingDuplicate",
    "DeliveryError",
    "DocumentChanged",
    "DocumentError",
    "DocumentGone",
    "DocumentNotFound",
    "DocumentUnavailable",
    "EndpointGone",
    "EvaluationRefused",
    "EvidenceError",
    "ForeignPlacement",
    "FourEyesRefused",
    "GatewayError",
    "HostKeyChanged",
    "InboundError",
    "IntakeError",
    "LeaseLost",
    "LoginRefused",
    "LoginThrottled",
    "MalformedPayload",
    "MissingHeaders",
    "NotFound",
    "OutcomeUnknown",
    "PayloadTooLarge",
    "PermanentDeliveryError",
    "PgpError",
    "QaRefused",
    "RegisterRefused",
    "RoleHeld",
    "RunInProgress",
    "SchemaViolation",
    "SettlementAnswerRefused",
    "SettlementError",
    "SignatureInvalid",
    "StoreUnavailable",
    "ThrottledError",
    "TimestampOutOfTolerance",
    "TransientDeliveryError",
    "UnknownAgency",
]
