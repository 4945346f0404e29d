"""The transport interface that HTTP and gRPC implement."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from loadgen.errors import UsageError
from loadgen.outcome import InferOutcome, StreamOutcome
from loadgen.redact import redact_url

if TYPE_CHECKING:
    from loadgen.shared_memory import Placement
    from loadgen.validation import ExpectedOutputs

# How long opening a connection may take, by default (--connect-timeout).
CONNECT_TIMEOUT_S = 10.0
# How long a model load may take by default: Triton answers a load request once the model is
# loaded (or failed), and a large model's instances take a while.
LOAD_TIMEOUT_S = 300.0


def split_host_port(url: str, default_port: int) -> tuple[str, int]:
    """(host, port) of `host:port` (a scheme:// prefix and user:password@ allowed; IPv6 in brackets)."""
    rest = url.split("://", 1)[-1].rstrip("/").rpartition("@")[2]
    host, sep, port = rest.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    bad_host = not host or "/" in host or any(c in host for c in "[]:") and not bracketed or any(c.isspace() for c in host)
    port_number = port.isascii() and port.isdigit() and 0 < int(port) < 65536
    if not sep or not port_number or bad_host:
        raise UsageError(f"bad server URL {redact_url(url)!r}: give it as host:port (port 1-65535), e.g. -u localhost:{default_port}")
    return host.strip("[]"), int(port)


def url_credentials(url: str) -> str | None:
    """The `user:password` of a URL's user:password@ part, percent-decoded; None without one."""
    userinfo, at, _ = url.split("://", 1)[-1].rpartition("@")
    return unquote(userinfo) if at else None


def check_header(name: str, value: str) -> None:
    """A -H header both protocols can carry: a token name and a one-line value."""
    if not name or any(c in name for c in ":\r\n \t") or any(c in value for c in "\r\n"):
        raise UsageError(f"bad header {name!r}: give -H as 'Name: value' on one line")


def unknown_model_error(message: str, model: str, version: str, url: str) -> UsageError | None:
    """The usage error for Triton's answer that a model (or version) is not loaded, else None."""
    if not model or not any(s in message for s in ("unknown model", "not available", "not found")):
        return None
    if version:
        return UsageError(f"model '{model}' version {version} is not on the server at {url}: check -m and -x")
    return UsageError(f"model '{model}' is not on the server at {url}: check -m")


def index_entry(entry: dict[str, Any]) -> dict[str, str]:
    """One model of a repository index with every key, as strings (HTTP leaves out an empty
    `reason`, and a `version` when the model has none)."""
    return {key: str(entry.get(key, "")) for key in ("name", "version", "state", "reason")}


@dataclass(frozen=True)
class InputTensor:
    """One input of a request, already serialized the way both protocols carry it.

    `data` is the raw tensor bytes in row-major order; for BYTES tensors each element is a
    4-byte little-endian length followed by its bytes (KServe v2's binary form).
    """

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: bytes


class RequestInputs(list):
    """The inputs of one request (InputTensors, in the model's order) and what its every response
    must hold (validation_data; None: responses are not checked, nor decoded). A list, so that
    `Transport.prepare` takes it as it takes plain inputs, and it travels to --workers as one."""

    def __init__(self, tensors: Iterable[InputTensor], expected: ExpectedOutputs | None = None) -> None:
        super().__init__(tensors)
        self.expected = expected


def expected_outputs(inputs: list[InputTensor]) -> ExpectedOutputs | None:
    """What the responses to `inputs` must hold: RequestInputs' expected outputs, else nothing."""
    return inputs.expected if isinstance(inputs, RequestInputs) else None


class Transport(ABC):
    """A connection to one Triton server: control calls plus the hot inference path.

    Control calls return Triton's JSON documents as dicts (the HTTP API's shape, whichever
    protocol carried them). `prepare` builds a request once; `infer` sends it and never
    raises for a failed request: the failure is data, in `InferOutcome.error`.
    """

    @abstractmethod
    async def server_metadata(self) -> dict[str, Any]: ...

    @abstractmethod
    async def model_metadata(self, model: str, version: str = "") -> dict[str, Any]: ...

    @abstractmethod
    async def model_config(self, model: str, version: str = "") -> dict[str, Any]: ...

    @abstractmethod
    async def model_statistics(self, model: str = "", version: str = "") -> dict[str, Any]:
        """`{"model_stats": [...]}`; an empty model name asks for every model at once."""

    @abstractmethod
    async def server_live(self, timeout_s: float) -> str | None:
        """None when the server answers its liveness check within `timeout_s`, else why not (one line)."""

    async def update_trace_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        """Update the server's global trace settings (Triton's trace extension: `trace_level`,
        `trace_rate`, `log_frequency`, ... as lists or strings) and return them as they now stand,
        each a list of strings. A ServerError says what the server answered when it refused."""
        raise NotImplementedError(f"{type(self).__name__} has no trace API")

    async def load_model(self, model: str, config: dict[str, Any] | None = None, timeout_s: float = LOAD_TIMEOUT_S) -> None:
        """Load or reload `model` through Triton's repository API, answered once it is loaded;
        with `config` (a model configuration as JSON, proto field names, the whole of it) in
        place of its config.pbtxt, whose files are left untouched. ModelLoadError when the server
        refuses; ServerError when it cannot be reached or gives no answer within `timeout_s`."""
        raise NotImplementedError(f"{type(self).__name__} has no model control API")

    async def unload_model(self, model: str) -> None:
        """Unload `model` (not the models an ensemble uses): answered at once, the model UNLOADING
        for a while after. ModelLoadError when the server refuses."""
        raise NotImplementedError(f"{type(self).__name__} has no model control API")

    async def repository_index(self) -> list[dict[str, str]]:
        """Every model in the server's repository: `name`, `version`, `state` ("READY",
        "UNAVAILABLE", "LOADING", ...) and `reason` ("" when there is none), all strings."""
        raise NotImplementedError(f"{type(self).__name__} has no model control API")

    async def register_system_shared_memory(self, name: str, key: str, byte_size: int) -> None:
        """Register the system shared-memory region `key` (a POSIX shm key, /name) of `byte_size`
        bytes with the server as `name`. A ServerError says what the server answered when it refused."""
        raise NotImplementedError(f"{type(self).__name__} has no shared-memory API")

    async def unregister_system_shared_memory(self, name: str) -> None:
        """Unregister the system shared-memory region `name`. ServerError when that fails."""
        raise NotImplementedError(f"{type(self).__name__} has no shared-memory API")

    @abstractmethod
    def prepare(
        self, model: str, version: str, inputs: list[InputTensor], outputs: list[str], id_prefix: str | None = None,
        sequences: bool = False, shared_memory: Placement | None = None,
    ) -> Any:
        """A request built once and sent many times (outputs requested in binary form). With
        RequestInputs that expect outputs, `infer` checks every response against them. With
        `id_prefix` (tracing), the request carries an id (loadgen.transport.request_id). With
        `sequences`, it carries sequence parameters set per send (loadgen.transport.sequence_params).
        With `shared_memory`, its inputs are read from and its outputs written to those slots of a
        registered region (loadgen.shared_memory), and the request carries no tensor data."""

    @abstractmethod
    async def infer(
        self, prepared: Any, number: int | None = None, sequence: tuple[int, bool, bool] | None = None
    ) -> InferOutcome:
        """Send a prepared request; with `number`, it carries the id of that number (prepared
        with an id prefix); with `sequence` (prepared with sequences), it is the request of that
        (sequence id, START, END)."""

    def prepare_stream(
        self, model: str, version: str, inputs: list[InputTensor], outputs: list[str], token_output: str | None = None,
        id_prefix: str | None = None,
    ) -> Any:
        """A streamed request (a decoupled model's) built once and sent many times; with
        `token_output`, each response's element count of that output is its tokens."""
        raise NotImplementedError(f"{type(self).__name__} does not stream")

    async def stream(self, prepared: Any, number: int | None = None) -> StreamOutcome:
        """Send a prepared streamed request and read its responses until the final one; never
        raises for a failed request (the failure is in `StreamOutcome.error`, with the responses
        read before it). With `number`, it carries the id of that number; a number already in
        flight on this transport is a caller's bug (ValueError). The transport enforces the request
        timeout it was opened with itself, ending the request as a timeout that keeps the responses
        read before it (the engine sets no deadline of its own on a stream)."""
        raise NotImplementedError(f"{type(self).__name__} does not stream")

    @abstractmethod
    async def close(self) -> None: ...

    async def __aenter__(self) -> Transport:
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()
