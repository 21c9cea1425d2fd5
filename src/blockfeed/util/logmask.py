"""One log filter for blockfeed and the libraries under it, at every level.

httpx logs each request's full URL at INFO, httpcore traces at DEBUG, websockets logs its
handshake at DEBUG (the request line with the endpoint's path, and headers such as
``Authorization: Basic base64(user:pass)``), uvicorn logs errors and access lines. Every record
of those loggers passes :class:`RedactFilter`, which formats the message once and masks it with
:func:`blockfeed.util.redact.redact_text` (URLs, JWTs, credential headers, request paths), and
masks a traceback the same way.

A logger's filters only see records logged on that very logger, not those of its children, so
:func:`install_log_redaction` names every logger these libraries use, plus every ``blockfeed``
logger that exists. The CLI also puts the filter on its stderr handler, which sees every record.
"""

from __future__ import annotations

import logging
import threading

from blockfeed.util.redact import redact_text

LIBRARY_LOGGERS = (
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
    "websockets",
    "websockets.client",
    "websockets.server",
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "blockfeed",
)
"""Where the libraries under blockfeed log (and blockfeed's root logger)."""
_ACCESS_LOGGERS = ("uvicorn.access",)
"""Access lines of our own server: its routes are not secret, only their query is masked."""

_lock = threading.Lock()
_filter: RedactFilter | None = None


class RedactFilter(logging.Filter):
    """Masks secrets in a record's message, arguments and traceback; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        keep_paths = record.name in _ACCESS_LOGGERS
        try:
            message = record.getMessage()
        except Exception:  # a record that cannot be formatted: keep its text, never its args
            message = f"{record.msg} (arguments not shown: formatting failed)"
        masked = redact_text(message, request_paths=not keep_paths)
        if masked != message or record.args:
            record.msg, record.args = masked, ()
        if record.exc_info and not record.exc_text:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact_text(text)
            if record.exc_text != text:
                record.exc_info = None  # formatters that re-format it would show the secret
        elif record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


def shared_filter() -> RedactFilter:
    """The process's one :class:`RedactFilter` (so installing twice adds nothing)."""
    global _filter
    with _lock:
        if _filter is None:
            _filter = RedactFilter()
        return _filter


def install_log_redaction(extra: tuple[str, ...] = ()) -> None:
    """Put the shared filter on every library logger, every existing ``blockfeed`` logger and
    the loggers named in ``extra`` (idempotent; cheap enough to call at every connect)."""
    redactor = shared_filter()
    names = set(LIBRARY_LOGGERS) | set(extra)
    names |= {
        name for name in list(logging.Logger.manager.loggerDict) if name.startswith("blockfeed.")
    }
    for name in names:
        logger = logging.getLogger(name)
        if redactor not in logger.filters:
            logger.addFilter(redactor)


def redacting_handler(handler: logging.Handler) -> logging.Handler:
    """``handler`` with the shared filter on it: it then masks every record it emits."""
    if shared_filter() not in handler.filters:
        handler.addFilter(shared_filter())
    return handler
