"""tokenizer: the LLM pipeline's first step, text to token ids (Hugging Face `tokenizers`).

Input  text_input BYTES [1]            the prompt, UTF-8
Input  max_tokens INT32 [1], optional  tokens to generate
Output input_ids  INT32 [-1]           the prompt's token ids; an empty prompt is <|endoftext|> alone
Output max_tokens INT32 [1]            max_tokens, or max_tokens_default when absent

Loads ../tokenizer.json, trained by ../build_tokenizer.py first when it is missing or stale.
A request whose prompt is not UTF-8 or longer than max_prompt_tokens tokens, or whose max_tokens
is outside 1..max_tokens_limit, gets an error response that says so; the others of the same
execute() call are answered normally.

Parameters (config.pbtxt): vocab_size (1024), max_prompt_tokens (768), max_tokens_default (32),
max_tokens_limit (256).
"""

import importlib.util
import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils


def _parameter(config, key, default):
    value = config.get("parameters", {}).get(key, {}).get("string_value", "")
    return value if value != "" else default


def _load_builder(folder):
    spec = importlib.util.spec_from_file_location("tokenizer_build", os.path.join(folder, "build_tokenizer.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class RequestError(ValueError):
    """What is wrong with one request, for its error response."""


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        vocab = int(_parameter(config, "vocab_size", "1024"))
        self.max_prompt_tokens = int(_parameter(config, "max_prompt_tokens", "768"))
        self.max_tokens_default = int(_parameter(config, "max_tokens_default", "32"))
        self.max_tokens_limit = int(_parameter(config, "max_tokens_limit", "256"))
        if not 1 <= self.max_tokens_default <= self.max_tokens_limit:
            raise pb_utils.TritonModelException(
                f"tokenizer: max_tokens_default {self.max_tokens_default} is not in 1..max_tokens_limit ({self.max_tokens_limit})"
            )
        folder = args["model_repository"]
        builder = _load_builder(folder)
        self.tokenizer = builder.load(folder, vocab)
        if self.tokenizer.get_vocab_size() > vocab:
            raise pb_utils.TritonModelException(
                f"tokenizer: {folder}/tokenizer.json has {self.tokenizer.get_vocab_size()} tokens, more than vocab_size {vocab} (tiny-lm's)"
            )
        # An empty prompt's one token, as GPT-2 starts an unconditional generation.
        self.end_of_text = self.tokenizer.token_to_id(builder.END_OF_TEXT)

    def _encode(self, request):
        raw = pb_utils.get_input_tensor_by_name(request, "text_input").as_numpy().reshape(-1)[0]  # dims [1]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RequestError(f"tokenizer: text_input is not UTF-8: {exc}") from None
        ids = self.tokenizer.encode(text).ids
        if not ids and self.end_of_text is None:  # a tokenizer.json of the user's, without it
            raise RequestError("tokenizer: the prompt is empty, and the tokenizer has no <|endoftext|> to start from")
        ids = ids or [self.end_of_text]
        if len(ids) > self.max_prompt_tokens:
            raise RequestError(f"tokenizer: the prompt is {len(ids)} tokens, more than max_prompt_tokens ({self.max_prompt_tokens})")
        tensor = pb_utils.get_input_tensor_by_name(request, "max_tokens")
        max_tokens = self.max_tokens_default if tensor is None else int(tensor.as_numpy().reshape(-1)[0])
        if not 1 <= max_tokens <= self.max_tokens_limit:
            raise RequestError(f"tokenizer: max_tokens {max_tokens} is not in 1..{self.max_tokens_limit}")
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor("input_ids", np.array(ids, dtype=np.int32)),
                pb_utils.Tensor("max_tokens", np.array([max_tokens], dtype=np.int32)),
            ]
        )

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                responses.append(self._encode(request))
            except RequestError as exc:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))))
        return responses
