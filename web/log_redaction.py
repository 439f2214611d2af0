"""Keep watch tokens out of every log line.

A status URL (/feedback/<token>/, /ws/feedback/<token>/, a live task's /tasks/<token>/)
carries a token, and
URLs end up in logs: Django's "Not Found: <path>" warnings, for one. Tokens are
bound to the submitter's session, so a leaked one is of little use, but they
still must not be written down. `RedactingFormatter` is the formatter of every
handler in settings.LOGGING, so any logger's record (Django, daphne, Celery,
ours) is redacted, its traceback text too. daphne's own access log bypasses
logging and is switched off; HAProxy writes the access log, with the token cut
out (deploy/haproxy.cfg, docs/decisions/).
"""

import logging
import re

REDACTED = "[redacted]"

# The token segment of our watch routes, whatever it holds (valid or not), where a URL's
# path begins: at the start of a line or a word, after a quote, or after `//host`. A file
# path such as `File "/srv/app/feedback/tasks.py"` has a directory before its `/feedback/`.
_TOKEN_IN_PATH = re.compile(
    r"((?:^|[\s\"'(=,]|//[^/\s\"']+)/(?:ws/[\w-]+|feedback|tasks)/)[^/\s\"'?#]+", re.MULTILINE
)
# Anything shaped like a django.core.signing value (payload:timestamp:signature)
# anywhere else in a line, e.g. in a Referer header or a future route.
_SIGNED_VALUE = re.compile(r"\.?[\w-]{8,}:[0-9A-Za-z]{4,}:[\w-]{43}(?![\w-])")


def redact(text: str) -> str:
    text = _TOKEN_IN_PATH.sub(rf"\1{REDACTED}", text)
    return _SIGNED_VALUE.sub(REDACTED, text)


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))
