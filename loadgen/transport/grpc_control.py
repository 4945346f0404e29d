"""gRPC control calls through tritonclient.grpc.aio, answered in the HTTP API's JSON shape.

Control calls ask tritonclient for the response protos and convert them to the HTTP API's JSON
shape: proto field names, fields at their default values included, 64-bit integers as numbers
(protobuf's JSON mapping writes them as strings), model_config unwrapped from {"config": ...}.
Failures are typed one-line errors (loadgen.errors).
"""

from __future__ import annotations

import json
from typing import Any

import grpc
import tritonclient.grpc.aio as grpcclient
from google.protobuf import descriptor as _descriptor
from google.protobuf.json_format import MessageToDict
from tritonclient.utils import InferenceServerException

from loadgen.errors import ModelLoadError, ServerError
from loadgen.transport.base import LOAD_TIMEOUT_S, index_entry, unknown_model_error
from loadgen.transport.probe import check_port
from loadgen.transport.tls import TlsOptions, tls_failure

_CONTROL_TIMEOUT_S = 60.0
_INT64_TYPES = frozenset(
    {
        _descriptor.FieldDescriptor.TYPE_INT64,
        _descriptor.FieldDescriptor.TYPE_UINT64,
        _descriptor.FieldDescriptor.TYPE_SINT64,
        _descriptor.FieldDescriptor.TYPE_FIXED64,
        _descriptor.FieldDescriptor.TYPE_SFIXED64,
    }
)


def _fix_int64(value: Any, desc: _descriptor.Descriptor) -> Any:
    """Turns the JSON mapping's 64-bit integer strings back into numbers, guided by `desc`."""
    if not isinstance(value, dict):
        return value
    for key, item in value.items():
        field = desc.fields_by_name.get(key)
        if field is None:
            continue
        if field.type == _descriptor.FieldDescriptor.TYPE_MESSAGE:
            sub = field.message_type
            if sub.GetOptions().map_entry:
                value_field = sub.fields_by_name["value"]
                if value_field.type == _descriptor.FieldDescriptor.TYPE_MESSAGE:
                    for k in item:
                        item[k] = _fix_int64(item[k], value_field.message_type)
                elif value_field.type in _INT64_TYPES:
                    for k in item:
                        item[k] = int(item[k])
            elif isinstance(item, list):
                value[key] = [_fix_int64(v, sub) for v in item]
            else:
                value[key] = _fix_int64(item, sub)
        elif field.type in _INT64_TYPES:
            value[key] = [int(v) for v in item] if isinstance(item, list) else int(item)
    return value


def to_http_json(message: Any) -> dict[str, Any]:
    """A response proto as the HTTP API would have written it."""
    as_dict = MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )
    return _fix_int64(as_dict, message.DESCRIPTOR)


def _status_name(exc: Exception) -> str:
    code = exc.code() if isinstance(exc, grpc.RpcError) and hasattr(exc, "code") else None
    if code is not None:
        return code.name
    status = exc.status() if hasattr(exc, "status") else None  # InferenceServerException
    return str(status or "").removeprefix("StatusCode.") or "UNKNOWN"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class GrpcControl:
    """Triton's control calls over gRPC to `target` (host:port); `url` as messages show it. The
    tritonclient client is made on first use, inside the running event loop."""

    def __init__(self, target: str, url: str, address: tuple[str, int], headers: dict[str, str], tls: TlsOptions | None) -> None:
        self._target = target
        self._url = url
        self._address = address
        self._headers = headers
        self._tls = tls
        self._client = None

    def _get_client(self):
        if self._client is None:
            tls = self._tls
            credentials = {} if tls is None else {
                "ssl": True, "root_certificates": tls.ca_file, "private_key": tls.key_file, "certificate_chain": tls.cert_file,
            }  # fmt: skip
            self._client = grpcclient.InferenceServerClient(self._target, **credentials)
        return self._client

    async def _call(
        self, what: str, method: str, *args: Any, model: str = "", version: str = "", model_control: str = "",
        timeout_s: float = _CONTROL_TIMEOUT_S, **kwargs: Any,
    ):  # fmt: skip
        """Calls tritonclient's `method` for its response proto; failures as typed one-line errors.
        With `model_control` (the model a load or unload is for), a refusal is a ModelLoadError."""
        client = self._get_client()
        try:
            return await getattr(client, method)(*args, headers=self._headers, client_timeout=timeout_s, **kwargs)
        except (InferenceServerException, grpc.RpcError) as exc:
            status = _status_name(exc)
            given = str(exc.message() if hasattr(exc, "message") else exc.details()).strip()
            message = _one_line(given)
            if model_control and status == "DEADLINE_EXCEEDED":  # most likely a load still going on: say so, as HTTP does
                raise ServerError(f"Triton at {self._url} did not answer {what} within {timeout_s:g} s") from None
            if status in ("UNAVAILABLE", "DEADLINE_EXCEEDED") and "model" not in message.lower():
                if self._tls is not None:
                    message = tls_failure(message, "grpc") or message
                else:  # a clearer error when nothing, or not gRPC, answers there (the probe speaks plain HTTP)
                    await check_port("grpc", *self._address, self._url)
                raise ServerError(f"cannot reach Triton over gRPC{' with TLS' if self._tls else ''} at {self._url}: {message}") from None
            if model_control:
                raise ModelLoadError(f"{what} failed at {self._url}: gRPC {status}: {message}", model_control, given, status) from None
            unknown = None
            if status in ("NOT_FOUND", "INVALID_ARGUMENT", "UNAVAILABLE"):
                unknown = unknown_model_error(message, model, version, self._url)
            if unknown is not None:
                raise unknown from None
            raise ServerError(f"{what} failed at {self._url}: gRPC {status}: {message}") from None

    async def server_metadata(self) -> dict[str, Any]:
        return to_http_json(await self._call("server metadata", "get_server_metadata"))

    async def model_metadata(self, model: str, version: str = "") -> dict[str, Any]:
        response = await self._call("model metadata", "get_model_metadata", model, str(version), model=model, version=version)
        return to_http_json(response)

    async def model_config(self, model: str, version: str = "") -> dict[str, Any]:
        response = await self._call("model config", "get_model_config", model, str(version), model=model, version=version)
        return to_http_json(response.config)

    async def model_statistics(self, model: str = "", version: str = "") -> dict[str, Any]:
        response = await self._call("model statistics", "get_inference_statistics", model, str(version), model=model, version=version)
        return to_http_json(response)

    async def update_trace_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        response = await self._call("updating the trace settings", "update_trace_settings", "", settings)
        return {key: list(value.value) for key, value in response.settings.items()}

    async def load_model(self, model: str, config: dict[str, Any] | None = None, timeout_s: float = LOAD_TIMEOUT_S) -> None:
        override = json.dumps(config) if config is not None else None
        await self._call(f"loading {model}", "load_model", model, config=override, model_control=model, timeout_s=timeout_s)

    async def unload_model(self, model: str) -> None:
        await self._call(f"unloading {model}", "unload_model", model, model_control=model)

    async def repository_index(self) -> list[dict[str, str]]:
        response = await self._call("the repository index", "get_model_repository_index")
        return [index_entry(entry) for entry in to_http_json(response).get("models", [])]

    async def register_system_shared_memory(self, name: str, key: str, byte_size: int) -> None:
        await self._call(f"registering shared-memory region {name}", "register_system_shared_memory", name, key, byte_size)

    async def unregister_system_shared_memory(self, name: str) -> None:
        await self._call(f"unregistering shared-memory region {name}", "unregister_system_shared_memory", name)

    async def server_live(self, timeout_s: float) -> str | None:
        try:
            live = await self._get_client().is_server_live(headers=self._headers, client_timeout=timeout_s)
        except (InferenceServerException, grpc.RpcError) as exc:
            return f"gRPC {_status_name(exc)}: {_one_line(exc.message() if hasattr(exc, 'message') else exc.details())}"
        return None if live else "it reports that it is not live"

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()
