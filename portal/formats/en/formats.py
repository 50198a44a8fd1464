"""Times as the portal's pages show them (2026-11-28 00:58:19 UTC), in the admin too:
approvers compare them with expiries and the audit log, so seconds and zone matter."""

DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i T"
DATE_FORMAT = "Y-m-d"
