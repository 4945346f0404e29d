"""Typed failures. The CLI maps each to its exit code; the library only raises them."""


class LoadgenError(Exception):
    """Base of every failure loadgen reports to its user as one line."""

    exit_code = 3


class UsageError(LoadgenError):
    """Bad flags, configuration or input data: the user can fix it by changing the call."""

    exit_code = 2


class ServerError(LoadgenError):
    """The server could not be started, reached or used for the run."""

    exit_code = 3


class ServerGone(ServerError):
    """The server died or stopped answering part way through a run."""


class Interrupted(LoadgenError):
    """SIGINT or SIGTERM ended the run; the finished levels were written."""

    exit_code = 130


class WorkerLost(LoadgenError):
    """A load worker died or became unreachable part way through a level."""

    exit_code = 3
