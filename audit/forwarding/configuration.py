"""The sinks the settings configure (AIRLOCK_AUDIT_STREAM_URL, AIRLOCK_AUDIT_SYSLOG_URL):
either, both or neither."""

from django.conf import settings

from integrations.siem import Sink


def configured_sink_names() -> set[str]:
    """The names of the sinks the settings configure, from the settings alone: for pages
    that only ask "is it configured", without building a sink (a session, a TLS context,
    a name lookup) each time."""
    from integrations.siem.http import HttpSink
    from integrations.siem.syslog import SyslogSink

    names = set()
    if settings.AIRLOCK_AUDIT_STREAM_URL:
        names.add(HttpSink.name)
    if settings.AIRLOCK_AUDIT_SYSLOG_URL:
        names.add(SyslogSink.name)
    return names


def configured_sinks() -> list[Sink]:
    """A fresh sink object for each configured receiver, HTTP first."""
    sinks: list[Sink] = []
    timeout = settings.AIRLOCK_AUDIT_FORWARD_TIMEOUT_SECONDS
    if settings.AIRLOCK_AUDIT_STREAM_URL:
        from integrations.siem.http import HttpSink

        sinks.append(
            HttpSink(
                settings.AIRLOCK_AUDIT_STREAM_URL,
                token=settings.AIRLOCK_AUDIT_STREAM_TOKEN,
                auth_scheme=settings.AIRLOCK_AUDIT_STREAM_AUTH_SCHEME,
                format=settings.AIRLOCK_AUDIT_STREAM_FORMAT,
                timeout=timeout,
            )
        )
    if settings.AIRLOCK_AUDIT_SYSLOG_URL:
        # Imported only when configured: the syslog sink brings TLS set-up along.
        from integrations.siem.syslog import SyslogSink

        sinks.append(
            SyslogSink(
                settings.AIRLOCK_AUDIT_SYSLOG_URL,
                ca_file=settings.AIRLOCK_AUDIT_SYSLOG_CA_FILE,
                timeout=timeout,
            )
        )
    return sinks
