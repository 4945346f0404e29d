"""gRPC transport: tritonclient.grpc.aio for the channel and the control calls, a direct call for infer.

Control calls ask tritonclient for the response protos and convert them to the HTTP API's JSON
shape: proto field names, fields at their default values included, 64-bit integers as numbers
(protobuf's JSON mapping writes them as strings), model_config unwrapped from {"config": ...}.

Infer: `prepare` builds the ModelInferRequest once and marshals it to bytes once; `infer`
sends those bytes through a unary-unary call on tritonclient's channel whose request
serializer is the identity, and unmarshals the ModelInferResponse itself. So, per request:
send_ns = handing the already-marshalled request to gRPC (creating the call; the C core does
the HTTP/2 framing and the write on its own), recv_ns = unmarshalling the response (from the
moment grpc handed its bytes back). perf_analyzer's gRPC client measures marshalling and
unmarshalling the same way; it marshals on every request, we only once. Creating a grpc.aio
call alone costs about 50 µs here, and a whole request about 200-300 µs of client CPU
(perf_analyzer's gRPC: about 90): grpc.aio, not our code, is the gRPC cost (see
bench/http_clients.py --clients lean,grpc).
"""

from __future__ import annotations

from time import perf_counter_ns
from typing import Any

import grpc
from google.protobuf import descriptor as _descriptor
from google.protobuf.json_format import MessageToDict

import tritonclient.grpc.aio as grpcclient
from tritonclient.grpc import service_pb2
from tritonclient.utils import InferenceServerException

from loadgen.errors import ServerError, UsageError
from loadgen.transport.base import InferOutcome, InputTensor, Transport

_CONTROL_TIMEOUT_S = 60.0
_INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"
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


class GrpcTransport(Transport):
    """Triton over gRPC. The channel is opened on first use, inside the running event loop."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.url = url
        self._headers = {str(k).strip().lower(): str(v).strip() for k, v in (headers or {}).items()}
        for name, value in self._headers.items():
            if not name or any(c in name for c in ":\r\n \t") or any(c in value for c in "\r\n"):
                raise UsageError(f"bad header {name!r}: give -H as 'Name: value' on one line")
        self._metadata = tuple(self._headers.items())
        self._client = None
        self._infer_call = None

    def _get_client(self):
        if self._client is None:
            self._client = grpcclient.InferenceServerClient(self.url)
            # The identity serializer and deserializer: requests go out as prepared bytes.
            self._infer_call = self._client._channel.unary_unary(_INFER_METHOD)
        return self._client

    # -- control calls ----------------------------------------------------------------------

    async def _control(self, what: str, method: str, *args: str, model: str = "", version: str = ""):
        """Calls tritonclient's `method` for its response proto; failures as typed one-line errors."""
        client = self._get_client()
        try:
            return await getattr(client, method)(*args, headers=self._headers, client_timeout=_CONTROL_TIMEOUT_S)
        except (InferenceServerException, grpc.RpcError) as exc:
            status = _status_name(exc)
            message = _one_line(exc.message() if hasattr(exc, "message") else exc.details())
            if status in ("UNAVAILABLE", "DEADLINE_EXCEEDED") and "model" not in message.lower():
                raise ServerError(f"cannot reach Triton over gRPC at {self.url}: {message}") from None
            if model and status in ("NOT_FOUND", "INVALID_ARGUMENT", "UNAVAILABLE") and (
                "unknown model" in message or "not available" in message or "not found" in message
            ):
                if version:
                    raise UsageError(f"model '{model}' version {version} is not on the server at {self.url}: check -m and -x") from None
                raise UsageError(f"model '{model}' is not on the server at {self.url}: check -m") from None
            raise ServerError(f"{what} failed at {self.url}: gRPC {status}: {message}") from None

    async def server_metadata(self) -> dict[str, Any]:
        return to_http_json(await self._control("server metadata", "get_server_metadata"))

    async def model_metadata(self, model: str, version: str = "") -> dict[str, Any]:
        response = await self._control("model metadata", "get_model_metadata", model, str(version), model=model, version=version)
        return to_http_json(response)

    async def model_config(self, model: str, version: str = "") -> dict[str, Any]:
        response = await self._control("model config", "get_model_config", model, str(version), model=model, version=version)
        return to_http_json(response.config)

    async def model_statistics(self, model: str = "", version: str = "") -> dict[str, Any]:
        response = await self._control(
            "model statistics", "get_inference_statistics", model, str(version), model=model, version=version
        )
        return to_http_json(response)

    # -- the hot path -----------------------------------------------------------------------

    def prepare(self, model: str, version: str, inputs: list[InputTensor], outputs: list[str]) -> bytes:
        request = service_pb2.ModelInferRequest(model_name=model, model_version=str(version or ""))
        for tensor in inputs:
            entry = request.inputs.add()
            entry.name = tensor.name
            entry.datatype = tensor.datatype
            entry.shape.extend(int(d) for d in tensor.shape)
            request.raw_input_contents.append(tensor.data)
        for name in outputs:
            request.outputs.add().name = name
        return request.SerializeToString()

    async def infer(self, prepared: bytes) -> InferOutcome:
        call = self._infer_call
        if call is None:
            self._get_client()
            call = self._infer_call
        send_ns = 0
        t0 = perf_counter_ns()
        try:
            pending = call(prepared, metadata=self._metadata)
            send_ns = perf_counter_ns() - t0
            raw = await pending
        except grpc.RpcError as exc:
            details = exc.details() if hasattr(exc, "details") else str(exc)
            return InferOutcome(send_ns, 0, f"gRPC {_status_name(exc)}: {_one_line(details or '')}")
        except (OSError, RuntimeError) as exc:  # a closed channel
            return InferOutcome(send_ns, 0, f"connection error: {_one_line(str(exc))}")
        t1 = perf_counter_ns()
        try:
            _parse_response(raw)
        except Exception as exc:  # noqa: BLE001 - a malformed response is an outcome, not a crash
            return InferOutcome(send_ns, perf_counter_ns() - t1, f"gRPC bad response: {_one_line(str(exc))}")
        return InferOutcome(send_ns, perf_counter_ns() - t1)

    async def close(self) -> None:
        client, self._client, self._infer_call = self._client, None, None
        if client is not None:
            await client.close()



_parse_response = service_pb2.ModelInferResponse.FromString
