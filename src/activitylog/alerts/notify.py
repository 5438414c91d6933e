"""Alert emails to the account's owners and admins, through the broadcast mailer (the SMTP relay or
``outbox/``). An email names what the alert names — the credential, the address, its last use, the
figures — and links to the alert and to each entry that tripped it."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid

from sqlalchemy import select

from activitylog.config import Settings
from activitylog.db.base import Database
from activitylog.db.models import Alert, User
from activitylog.services.mailer import open_mailer

log = logging.getLogger("activitylog.alerts")

FRESH = timedelta(hours=1)
"""Only alerts whose triggering entry is this recent are emailed: a detector rebuilding its state from an
old log (or its first run over one) raises what it finds there, but does not mail about last year."""


def recipients(db: Database, account_id: str) -> list[str]:
    with db.for_account(account_id).reader() as session:
        rows = session.scalars(
            select(User.email).where(User.account_id == account_id, User.role.in_(("owner", "admin")))
        )
        return sorted(rows)


def compose(settings: Settings, alert: Alert, to: str) -> EmailMessage:
    base = settings.public_url.rstrip("/")
    lines = [alert.summary, ""]
    if alert.actor_type:
        lines.append(
            f"Credential: {alert.actor_name or alert.actor_id} ({alert.actor_type} {alert.actor_id})"
        )
    if alert.ip:
        lines.append(f"Address: {alert.ip}")
    figures = alert.figures or {}
    if figures.get("last_use"):
        lines.append(f"Last use before this: {figures['last_use']}")
    for name, value in figures.items():
        if name != "last_use":
            lines.append(f"{name.replace('_', ' ').capitalize()}: {value}")
    lines += ["", f"The alert: {base}/alerts/{alert.id}", "The entries that tripped it:"]
    lines += [f"  {base}/activity/{seq}" for seq in alert.seqs]
    lines += ["", f"Kind: {alert.kind}. Acknowledge it on the Alerts page once it is handled."]
    message = EmailMessage()
    message["From"] = settings.alert_from_email
    message["To"] = to
    message["Subject"] = f"[activitylog] {alert.kind}: {alert.summary}"[:200]
    message["Message-ID"] = make_msgid(domain=settings.alert_from_email.rsplit("@", 1)[-1])
    message["X-Activitylog-Alert"] = alert.id
    message.set_content("\n".join(lines))
    return message


def email_alert(db: Database, settings: Settings, alert: Alert) -> int:
    """Send the alert to the account's owners and admins; returns how many. A mail failure is logged,
    never raised: the alert is already in the dashboard and every stream."""
    if datetime.now(UTC) - alert.trigger_at > FRESH:
        return 0
    to = recipients(db, alert.account_id)
    if not to:
        return 0
    try:
        mailer = open_mailer(settings)
        try:
            for address in to:
                mailer.send(compose(settings, alert, address))
        finally:
            mailer.close()
    except Exception:
        log.exception("alert %s: could not send its email", alert.id)
        return 0
    return len(to)
