"""The SMTP relay of one law firm: one session per mail, TLS always, every attempt on record.

* TLS is never optional: ``starttls`` refuses a server that does not offer STARTTLS (a
  stripping attacker gets nothing), ``implicit`` speaks TLS from the first byte. The server
  certificate is verified (system CAs, or the configured ``ca_file``).
* Answers: 2xx delivered (the answer is the receipt); 4xx transient (retried); 5xx permanent;
  no answer after DATA is an unknown outcome. DSN parameters (``RET``, ``ENVID``, ``NOTIFY``,
  ``ORCPT``) are sent only when the server offers DSN; with a ``bounce_address`` the envelope
  sender is VERP-encoded so a bounce maps to its dispatch even if the report is mangled.
* The bytes of every attempt are stored (``mail_messages``, evidence leaf ``mail``) before
  the DATA command, and the answer after it (adapters.email.journal).
"""

import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import aiosmtplib

from adapters.email import journal as mail_journal
from adapters.email.journal import CarriedItem
from gateway.config.agencies import EmailAgency
from gateway.errors import (
    DeliveryError,
    OutcomeUnknown,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from gateway.store.database import Database


@dataclass(frozen=True, slots=True)
class SmtpAnswer:
    """The relay's answer to DATA (with the recipients it refused, if any)."""

    code: int
    text: str


class SmtpRelay:
    """Sends mail through one firm's SMTP relay.

    Args:
        agency: the firm (its ``email.smtp`` section says where and how).
        password: the relay password, when the relay needs authentication.
        tls: the TLS context that verifies the relay's certificate.
        db: where attempts and answers are recorded (None: not recorded, tests only).
        clock: returns Unix time.
    """

    def __init__(
        self,
        *,
        agency: EmailAgency,
        password: str | None,
        tls: ssl.SSLContext,
        db: Database | None,
        clock: Callable[[], float],
    ) -> None:
        self._agency = agency
        self._email = agency.email
        self._password = password
        self._tls = tls
        self._db = db
        self._clock = clock

    def _envelope_from(self, ref: str) -> str:
        bounce = self._email.bounce_address
        if bounce is None:
            return self._email.from_address
        local, _, domain = bounce.partition("@")
        return f"{local}+{ref}@{domain}"

    def _error(self, exc: BaseException, phase: str) -> DeliveryError:
        """Translate an aiosmtplib/ssl/OS error raised before DATA."""
        agency_id = self._agency.id
        where = f"{agency_id}: SMTP {self._email.smtp.host}:{self._email.smtp.port} {phase}"
        if isinstance(exc, ssl.SSLCertVerificationError):
            return PermanentDeliveryError(
                f"{where}: the server's TLS certificate is not trusted ({exc.verify_message}); "
                "fix smtp.ca_file or the relay's certificate",
                agency_id=agency_id,
            )
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            text = f"{where}: {exc.code} {exc.message}"
            if 400 <= exc.code < 500:
                return TransientDeliveryError(text, agency_id=agency_id, status=exc.code)
            return PermanentDeliveryError(text, agency_id=agency_id, status=exc.code)
        return TransientDeliveryError(f"{where}: {type(exc).__name__}: {exc}", agency_id=agency_id)

    async def send(
        self,
        message: bytes,
        message_id: str,
        ref: str,
        items: Sequence[CarriedItem],
        possible_duplicate: bool,
    ) -> SmtpAnswer:
        """Send one mail in a session of its own; the relay's answer to DATA.

        Raises:
            DeliveryError: connecting, the envelope or DATA failed (``OutcomeUnknown`` when
                no answer came after DATA).
        """
        smtp = self._email.smtp
        recipients = [*self._email.to, *self._email.cc]
        sender = self._envelope_from(ref)
        client = aiosmtplib.SMTP(
            hostname=smtp.host,
            port=smtp.port,
            use_tls=smtp.tls == "implicit",
            start_tls=False,
            tls_context=self._tls,
            timeout=smtp.timeout_seconds,
            local_hostname=self._email.message_id_domain,
        )
        try:
            try:
                await client.connect(timeout=smtp.connect_timeout_seconds)
                await client.ehlo()
                if smtp.tls == "starttls":
                    if not client.supports_extension("starttls"):
                        raise PermanentDeliveryError(
                            f"{self._agency.id}: SMTP {smtp.host}:{smtp.port} does not offer "
                            'STARTTLS; refusing to send in the clear (tls = "starttls" '
                            "requires it; a stripping attacker or a misconfigured relay)",
                            agency_id=self._agency.id,
                        )
                    await client.starttls()
                    await client.ehlo()
                if smtp.username is not None and self._password is not None:
                    await client.login(smtp.username, self._password)
            except (aiosmtplib.SMTPException, ssl.SSLError, OSError) as exc:
                raise self._error(exc, "connect") from exc
            dsn = client.supports_extension("dsn")
            mail_id = await self._record_attempt(
                message, message_id, ref, sender, recipients, possible_duplicate, dsn, items
            )
            try:
                answer = await self._transfer(client, sender, recipients, message, ref, dsn)
            except DeliveryError as exc:
                state = {OutcomeUnknown: "unknown", TransientDeliveryError: "deferred"}.get(
                    type(exc), "refused"
                )
                await self._record_answer(mail_id, state, exc.status, str(exc))
                raise
            await self._record_answer(mail_id, "accepted", answer.code, answer.text)
            return answer
        finally:
            try:
                if client.is_connected:
                    await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                client.close()

    async def _transfer(
        self,
        client: aiosmtplib.SMTP,
        sender: str,
        recipients: Sequence[str],
        message: bytes,
        ref: str,
        dsn: bool,
    ) -> SmtpAnswer:
        mail_options = ["RET=HDRS", f"ENVID={ref}"] if dsn else []
        try:
            await client.mail(sender, options=mail_options)
            refused: list[aiosmtplib.SMTPRecipientRefused] = []
            for address in recipients:
                rcpt_options = ["NOTIFY=FAILURE,DELAY", f"ORCPT=rfc822;{address}"] if dsn else []
                try:
                    await client.rcpt(address, options=rcpt_options)
                except aiosmtplib.SMTPRecipientRefused as exc:
                    refused.append(exc)
            if len(refused) == len(recipients):
                worst = max(refused, key=lambda e: e.code)
                raise worst
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise self._error(exc, "envelope") from exc
        try:
            response = await client.data(message)
        except aiosmtplib.SMTPResponseException as exc:
            raise self._error(exc, "DATA") from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise OutcomeUnknown(
                f"{self._agency.id}: no answer after DATA ({type(exc).__name__}: {exc}); "
                "the firm may have received the mail",
                agency_id=self._agency.id,
            ) from exc
        text = f"{response.code} {response.message}"
        if refused:
            text += "; refused: " + ", ".join(f"{e.recipient} {e.code}" for e in refused)
        return SmtpAnswer(response.code, text)

    async def _record_attempt(
        self,
        message: bytes,
        message_id: str,
        ref: str,
        sender: str,
        recipients: Sequence[str],
        possible_duplicate: bool,
        dsn: bool,
        items: Sequence[CarriedItem],
    ) -> int | None:
        if self._db is None:
            return None
        async with self._db.transaction() as conn:
            return await mail_journal.record_attempt(
                conn,
                agency_id=self._agency.id,
                message_id=message_id,
                ref=ref,
                attempt_no=1 + await mail_journal.attempt_count(conn, message_id),
                envelope_from=sender,
                recipients=recipients,
                body=message,
                possible_duplicate=possible_duplicate,
                dsn=dsn,
                items=items,
                now=datetime.fromtimestamp(self._clock(), UTC),
            )

    async def _record_answer(
        self, mail_id: int | None, state: str, code: int | None, text: str
    ) -> None:
        if self._db is None or mail_id is None:
            return
        async with self._db.transaction() as conn:
            await mail_journal.record_answer(
                conn,
                mail_id,
                state=state,
                code=code,
                answer=text,
                now=datetime.fromtimestamp(self._clock(), UTC),
            )


__all__ = ["SmtpAnswer", "SmtpRelay"]
