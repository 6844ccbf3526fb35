"""Keep API tokens out of every log line, the web server's access log included.

The API never reads a token from a URL, but a client may still put one there by mistake
(``?token=...``), and uvicorn's access log writes the whole request line. A filter on every
log handler replaces the configured token values (also URL-encoded) and the values of
query parameters whose names look secret.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

REDACTED = "[redacted]"

_SECRET_QUERY_VALUE = re.compile(
    r"([?&][^=&\s\"]*(?:token|key|secret|pass|auth|session|sig|cookie)[^=&\s\"]*=)[^&\s\"]*",
    re.IGNORECASE,
)


class RedactSecrets(logging.Filter):
    """Rewrites a record's message, arguments and traceback text; never drops a record."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        variants = {form for s in secrets if s for form in (s, quote(s, safe=""), quote_plus(s))}
        # Longest first, so a secret's encoded form is not half-replaced by a shorter one.
        self._secrets = sorted(variants, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return _SECRET_QUERY_VALUE.sub(rf"\1{REDACTED}", text)

    def _argument(self, value: object) -> object:
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, int | float) or value is None:
            return value
        shown = str(value)
        cleaned = self.redact(shown)
        return value if cleaned == shown else cleaned

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._argument(record.msg)
        # Arguments are rewritten one by one rather than merged into the message: uvicorn's
        # access formatter unpacks them.
        if isinstance(record.args, tuple):
            record.args = tuple(self._argument(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: self._argument(v) for k, v in record.args.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


def install_log_redaction(secrets: Iterable[str]) -> None:
    """Put one `RedactSecrets` on every handler of every configured logger (replacing an
    earlier one). Call it after the server has set up its logging: uvicorn replaces its
    handlers when it starts."""
    redactor = RedactSecrets(secrets)
    loggers = [logging.getLogger()] + [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    for handler in {h for logger in loggers for h in logger.handlers}:
        for old in [f for f in handler.filters if isinstance(f, RedactSecrets)]:
            handler.removeFilter(old)
        handler.addFilter(redactor)
