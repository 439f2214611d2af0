"""Keep watch tokens out of every log line.

A status URL (/feedback/<token>/, /ws/feedback/<token>/) carries a token, and
URLs end up in logs: Django's "Not Found: <path>" warnings, daphne's access log.
Tokens are bound to the submitter's session, so a leaked one is of little use,
but they still must not be written down. Two places redact them:

- `RedactingFormatter`, the formatter of every handler in settings.LOGGING,
  so any logger's record (Django, daphne, Celery, ours) is redacted, including
  its traceback text;
- daphne's access log, which daphne writes straight to a stream, bypassing
  logging: `redact_daphne_access_log()` (called from asgi.py, so it applies
  however daphne is started) wraps its one writer.
"""

import functools
import logging
import re

REDACTED = "[redacted]"

# The token segment of our watch routes, whatever it holds (valid or not).
_TOKEN_IN_PATH = re.compile(r"(/(?:ws/[\w-]+|feedback)/)[^/\s\"'?#]+")
# Anything shaped like a django.core.signing value (payload:timestamp:signature)
# anywhere else in a line, e.g. in a Referer header or a future route.
_SIGNED_VALUE = re.compile(r"\.?[\w-]{8,}:[0-9A-Za-z]{4,}:[\w-]{43}(?![\w-])")


def redact(text: str) -> str:
    text = _TOKEN_IN_PATH.sub(rf"\1{REDACTED}", text)
    return _SIGNED_VALUE.sub(REDACTED, text)


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def redact_daphne_access_log() -> None:
    try:
        from daphne.access import AccessLogGenerator
    except ImportError:  # served by something else: its logs go through logging
        return
    original = AccessLogGenerator.write_entry
    if getattr(original, "redacts_tokens", False):
        return

    @functools.wraps(original)
    def write_entry(self, host, date, request, *args, **kwargs):
        return original(self, host, date, redact(request), *args, **kwargs)

    write_entry.redacts_tokens = True  # type: ignore[attr-defined]
    AccessLogGenerator.write_entry = write_entry
