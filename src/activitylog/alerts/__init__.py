"""Alerts: detectors that follow the log and warn while it happens (API.md part 2, "Alerts")."""
