"""activitylog: an email-marketing account whose every mutation lands in a tamper-evident activity log."""

__version__ = "0.1.0"
