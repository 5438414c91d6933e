"""Where broadcast messages go: an SMTP relay (``ACTIVITYLOG_SMTP_URL``) or, unset, ``.eml`` files in
``outbox/`` beside the database — so a fresh install sends nothing anywhere until told to."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse

from activitylog.config import Settings
from activitylog.db.models import Broadcast


class Mailer(Protocol):
    def send(self, message: EmailMessage) -> None: ...

    def close(self) -> None: ...


def compose(broadcast: Broadcast, to: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = broadcast.from_email
    message["To"] = to
    message["Subject"] = broadcast.subject
    message["Message-ID"] = make_msgid(domain=broadcast.from_email.rsplit("@", 1)[-1])
    message["X-Activitylog-Broadcast"] = broadcast.id
    message.set_content(broadcast.text or "")
    if broadcast.html:
        message.add_alternative(broadcast.html, subtype="html")
    return message


class SmtpMailer:
    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("smtp", "smtps") or not parsed.hostname:
            raise ValueError("ACTIVITYLOG_SMTP_URL: use smtp://[user:password@]host:port or smtps://…")
        factory = smtplib.SMTP_SSL if parsed.scheme == "smtps" else smtplib.SMTP
        self.client = factory(
            parsed.hostname, parsed.port or (465 if parsed.scheme == "smtps" else 25), timeout=30
        )
        if parsed.username:
            self.client.login(unquote(parsed.username), unquote(parsed.password or ""))

    def send(self, message: EmailMessage) -> None:
        self.client.send_message(message)

    def close(self) -> None:
        try:
            self.client.quit()
        except smtplib.SMTPException:
            self.client.close()


class OutboxMailer:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def send(self, message: EmailMessage) -> None:
        about = message["X-Activitylog-Broadcast"] or message["X-Activitylog-Alert"]
        name = f"{about}-{message['To'].replace('@', '_at_')}.eml"
        (self.folder / name).write_bytes(bytes(message))

    def close(self) -> None:
        pass


def outbox_folder(settings: Settings) -> Path:
    url = settings.database_url
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        return Path(url[len("sqlite:///") :]).parent / "outbox"
    return Path("outbox")


def open_mailer(settings: Settings) -> Mailer:
    return SmtpMailer(settings.smtp_url) if settings.smtp_url else OutboxMailer(outbox_folder(settings))
