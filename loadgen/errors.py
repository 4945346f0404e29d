"""Typed failures. The CLI maps each to its exit code; the library only raises them."""


class LoadgenError(Exception):
    """Base of every failure loadgen reports to its user as one line."""

    exit_code = 3


class UsageError(LoadgenError):
    """Bad flags, configuration or input data: the user can fix it by changing the call."""

    exit_code = 2


class RoofUnknown(UsageError):
    """The peak compute or memory bandwidth of the server's device cannot be found from here: a remote
    CPU server (not measurable from this host), a GPU missing from the datasheet table or whose name cannot
    be read, a precision the table has no figure for. The user passes --peak-tflops and --peak-bandwidth-gbs."""


class ServerError(LoadgenError):
    """The server could not be started, reached or used for the run."""

    exit_code = 3


class ServerGone(ServerError):
    """The server died or stopped answering part way through a run."""


class ModelLoadError(ServerError):
    """The server refused to load (or unload) a model, or loaded it otherwise than asked (a
    configuration it rejects, a model that fails to initialize, model control not enabled). `message` is Triton's
    answer as given; `status` the refusal's status by gRPC's code names, whichever protocol
    carried it ("INVALID_ARGUMENT", "INTERNAL", "UNAVAILABLE" when the server takes no load
    requests at all), None when the load was answered but the model did not come up as asked."""

    def __init__(self, text: str, model: str, message: str, status: str | None = None) -> None:
        super().__init__(text)
        self.model = model
        self.message = message
        self.status = status


class Interrupted(LoadgenError):
    """SIGINT or SIGTERM ended the run; the finished levels were written."""

    exit_code = 130


class WorkerLost(LoadgenError):
    """A load worker died or became unreachable part way through a level."""

    exit_code = 3
