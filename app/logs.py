"""Logging setup: one JSON object (or a text line) per record on stderr, each carrying the id of
the request that emitted it. Library loggers that can print signatures or keys stay at WARNING."""

from __future__ import annotations

import contextvars
import datetime
import json
import logging
import re
import sys
import time
from dataclasses import dataclass
from typing import Any, Literal, TextIO

# At DEBUG, botocore logs canonical requests and the SigV4 signature of every presigned URL,
# and urllib3 logs full request lines; neither may ever reach our logs.
QUIET_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3", "httpx", "httpcore")
# uvicorn's own loggers; their lines go through our handler too. (Its access log, which
# prints query strings, is off: s3gate.access has one line per request instead.)
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error")
UVICORN_ACCESS_LOGGER = "uvicorn.access"
HANDLER_NAME = "s3gate"
# C0 and C1 controls (U+0085 is one) and the Unicode line and paragraph separators: any of them
# in a token's sub, a path or an exception message could start what looks like a new line.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

LogFormat = Literal["json", "text"]


@dataclass(slots=True)
class RequestContext:
    """What every log line of one request shares; the principal dependency fills `owner`."""

    request_id: str
    owner: str | None = None
    # The client's address (the balancer's X-Forwarded-For when S3GATE_PROXY_HEADERS trusts
    # it): the access history records it with each URL issued.
    client: str | None = None


_request: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "s3gate_request", default=None
)


def bind_request(context: RequestContext) -> contextvars.Token[RequestContext | None]:
    """Make `context` the current request's for the log lines that follow."""
    return _request.set(context)


def unbind_request(token: contextvars.Token[RequestContext | None]) -> None:
    _request.reset(token)


def current_client() -> str | None:
    """The address of the client whose request is running (None outside a request)."""
    context = _request.get()
    return context.client if context is not None else None


def note_owner(sub: str) -> None:
    """Record the authenticated caller of the current request (for its access log line)."""
    context = _request.get()
    if context is not None:
        # The object, not the variable: a copied context (a worker thread) shares it.
        context.owner = sub


class RequestIdFilter(logging.Filter):
    """Stamps each record with the current request's id (None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _request.get()
        record.request_id = context.request_id if context is not None else None
        return True


def escape_controls(text: str) -> str:
    """`text` with every control character written as a visible escape (`\\n`, `\\x1b`, ...)."""
    return _CONTROLS.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _SHORT_ESCAPES.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def _jsonable(value: object) -> object:
    # Field values that json cannot write itself: ids (UUID), enums, expiry times.
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    return str(value)


def audit(logger: logging.Logger, event: str, /, **fields: object) -> None:
    """An INFO line whose message is the fixed `event`; ids and owners go in as fields.

    Never interpolated into the message: an owner is a token's `sub`, which may hold any
    character. Both formats write fields escaped (JSON keys, or key=value in text).
    """
    logger.info(event, extra={"fields": fields})


# One encoder for every line: json.dumps(default=...) builds a new one per call.
_ENCODER = json.JSONEncoder(default=_jsonable)
_seconds_cache: tuple[int, str] = (-1, "")


def _timestamp(created: float) -> str:
    global _seconds_cache
    whole = int(created)
    if _seconds_cache[0] != whole:  # strftime once per second, not once per line
        _seconds_cache = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{_seconds_cache[1]}.{int(created % 1 * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, request_id, message, then the record's
    `fields` (structured data passed as `extra={"fields": {...}}`)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "request_id": getattr(record, "request_id", None),
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        # ASCII only: escaped control characters keep a forged path from starting a new line.
        return _ENCODER.encode(line)


class TextFormatter(logging.Formatter):
    """For terminals: the classic line, then request_id, the `fields` as key=value, and any
    traceback as `exception="..."`.

    One record is one line, as in JSON: control characters in the message are escaped, and
    field values and tracebacks are JSON strings, so no text a client controls (a token's sub,
    a path, an exception message) can start a line that looks like another record.
    """

    def format(self, record: logging.LogRecord) -> str:
        # Not logging.Formatter.format: it appends tracebacks (and a `record.exc_text` another
        # handler's formatter cached) unescaped on lines of their own.
        record.message = record.getMessage()
        record.asctime = self.formatTime(record, self.datefmt)
        message = escape_controls(record.message)
        line = f"{record.asctime} {record.levelname} {record.name} {message}"
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            line += f" request_id={escape_controls(str(request_id))}"
        fields: dict[str, object] = dict(getattr(record, "fields", None) or {})
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            fields["exception"] = record.exc_text
        if record.stack_info:
            fields["stack"] = self.formatStack(record.stack_info)
        return line + "".join(
            f" {escape_controls(str(key))}={json.dumps(value, default=_jsonable)}"
            for key, value in fields.items()
        )


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever sys.stderr is when a record arrives (test runners swap it)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _: TextIO) -> None:
        return None


def log_handler(log_format: LogFormat = "text", stream: TextIO | None = None) -> logging.Handler:
    """Our handler: the chosen format, request ids, on `stream` (default: stderr)."""
    skip_unused_record_attributes()  # also when uvicorn's dictConfig builds it in a worker
    handler: logging.Handler = _StderrHandler() if stream is None else logging.StreamHandler(stream)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    return handler


def silence_uvicorn_access_log() -> None:
    """Switch uvicorn's access log off as its `--no-access-log` does, however uvicorn was
    started: it prints query strings and would repeat every s3gate.access line."""
    access = logging.getLogger(UVICORN_ACCESS_LOGGER)
    access.handlers.clear()  # with no handler, uvicorn does not even build the line
    access.propagate = False


def skip_unused_record_attributes() -> None:
    """Stop the logging module from filling in what no s3gate format prints: the caller's
    file, function and line (a stack walk per record), thread, process and multiprocessing
    names. The stdlib's own HOWTO ("Optimization") lists these switches for this purpose."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def configure_logging(level: str, log_format: LogFormat = "text") -> None:
    """Logs at `level` on stderr in `log_format`, with secret-bearing library loggers held back.

    Replaces only a handler this function installed before, so test runners keep theirs.
    """
    skip_unused_record_attributes()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(handler)
    root.addHandler(log_handler(log_format))
    root.setLevel(level.upper())
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def logging_config(level: str, log_format: LogFormat) -> dict[str, Any]:
    """The same setup as configure_logging, as a dictConfig for uvicorn's `log_config`: each
    worker process applies it when it starts, and uvicorn's own lines use our format too."""
    upper = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {HANDLER_NAME: {"()": f"{__name__}.log_handler", "log_format": log_format}},
        "root": {"level": upper, "handlers": [HANDLER_NAME]},
        "loggers": {
            **{
                name: {"level": upper, "handlers": [], "propagate": True}
                for name in UVICORN_LOGGERS
            },
            UVICORN_ACCESS_LOGGER: {"handlers": [], "propagate": False},
            **{name: {"level": "WARNING"} for name in QUIET_LOGGERS},
        },
    }
