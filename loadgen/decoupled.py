"""Decoupled models, which answer a request with a stream of responses: whether the model measured
is one (itself, or through a step of an ensemble at any depth), and which of its outputs holds the
tokens of a streamed response."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from loadgen.errors import UsageError
from loadgen.server_stats import ModelTree

INTEGER_TYPES = ("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64")


def decoupled_model(tree: ModelTree, configs: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The model that makes `tree` decoupled: its own name when its config says so (Triton marks an
    ensemble with a decoupled step itself, but a server need not be that Triton), else the first
    decoupled step, depth first; None when no model of the tree is decoupled. `configs`: each
    model's configuration by name (as the sweep fetched them for the tree)."""
    if configs.get(tree.name, {}).get("model_transaction_policy", {}).get("decoupled"):
        return tree.name
    for step in tree.composing:
        found = decoupled_model(step, configs)
        if found is not None:
            return found
    return None


def check_streamable(model: str, decoupled: str | None, streaming: bool) -> None:
    """A decoupled model is reached only by streaming: without --streaming, the one line that says so."""
    if decoupled is None or streaming:
        return
    what = f"model {model!r} is decoupled" if decoupled == model else f"model {model!r} has a decoupled step, {decoupled!r}"
    raise UsageError(f"{what} (a stream of responses per request): add --streaming, with -i grpc, or -i http where Triton's "
                     "generate endpoint can map the model's inputs")


def token_output(model: str, outputs: Sequence[Mapping[str, Any]], named: str | None) -> str | None:
    """The output whose element count in a streamed response is its tokens: `named` (--token-output),
    which the model must have; else the model's only integer output, or its only output (a text
    model streaming one piece of text a token, as the llm-ensemble does); None otherwise."""
    names = [str(output.get("name")) for output in outputs]
    if named is not None:
        if named not in names:
            raise UsageError(f"--token-output {named!r}: model {model!r} has no such output; its outputs are "
                             f"{', '.join(names) or 'none'}")
        return named
    integers = [str(output.get("name")) for output in outputs if output.get("datatype") in INTEGER_TYPES]
    if len(integers) == 1:
        return integers[0]
    return names[0] if len(names) == 1 else None
