"""One base exception; subclasses carry what the edge (CLI exit code, HTTP status) needs."""

from __future__ import annotations

from typing import Any


class StandpointError(Exception):
    """Base of every error standpoint raises on purpose."""

    exit_code = 1
    status_code = 500

    def __init__(self, message: str, *, article_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.article_id = article_id


class InputError(StandpointError):
    """The article itself is unusable: empty, binary, not decodable, or too long."""

    exit_code = 2
    status_code = 422


class SettingsError(StandpointError):
    """A setting (a STANDPOINT_* variable, or the flag that overrides it) has a bad value."""

    exit_code = 78  # EX_CONFIG in sysexits.h: a configuration error


class ModelError(StandpointError):
    """The model could not be loaded or did not answer."""

    exit_code = 3
    status_code = 503


class Cancelled(StandpointError):
    """Every request waiting for this work has gone (deadline passed or client hung up), so
    the work stopped between steps; nobody reads this error."""

    status_code = 499


# Errors of the HTTP edge and the batcher ------------------------------------------------------
class UnauthorizedError(StandpointError):
    status_code = 401


class BodyTooLargeError(StandpointError):
    status_code = 413


class QueueFullError(StandpointError):
    status_code = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotReadyError(ModelError):
    """The pipeline (and its model) is still loading, failed to load, or is shutting down."""


class OverCapacityError(StandpointError):
    """One request holds more work than the server can do within the deadline."""

    status_code = 503


class DeadlineError(StandpointError):
    status_code = 504


class ClientGoneError(StandpointError):
    """The client disconnected while waiting; nobody reads the response."""

    status_code = 499


def shorten(text: object, limit: int = 60) -> str:
    """``text`` for one line of a message: cut to ``limit`` characters, saying how long it was."""
    text = str(text)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} characters)"


def printable(text: str) -> str:
    """``text`` safe to print or encode: a lone surrogate becomes its escape (``\\ud800``)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def first_error(exc: Any) -> str:
    """The first problem of a pydantic ``ValidationError`` as ``where: what``."""
    err = exc.errors()[0]
    where = printable(".".join(str(p) for p in err.get("loc", ())))
    if err.get("type") == "extra_forbidden":
        return f"unknown field {where!r}"
    message = printable(str(err.get("msg", "invalid"))).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message
