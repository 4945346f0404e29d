"""detokenizer: the LLM pipeline's last step, token ids to text (Hugging Face `tokenizers`).

Input  output_ids  INT32 [-1]  token ids
Output text_output BYTES [1]   their text, UTF-8, special tokens kept (<|endoftext|> as its text)

Decodes with the tokenizer model's tokenizer.json (tokenizer_dir, relative to this model's
folder), built first by its build_tokenizer.py when it is missing or stale. Decoding a whole
sequence gives the text back byte for byte; decoding one token at a time, as llm-ensemble does,
gives U+FFFD for a token that holds part of a multi-byte character. An id outside
0..vocab_size-1 gets an error response.

Parameters (config.pbtxt): vocab_size (1024), tokenizer_dir (../tokenizer).
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


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.vocab = int(_parameter(config, "vocab_size", "1024"))
        folder = os.path.normpath(os.path.join(args["model_repository"], _parameter(config, "tokenizer_dir", "../tokenizer")))
        self.tokenizer = _load_builder(folder).load(folder, self.vocab)

    def _decode(self, request):
        ids = pb_utils.get_input_tensor_by_name(request, "output_ids").as_numpy().reshape(-1)
        outside = ids[(ids < 0) | (ids >= self.vocab)]
        if outside.size:
            return pb_utils.InferenceResponse(
                error=pb_utils.TritonError(f"detokenizer: token id {int(outside[0])} is not in 0..{self.vocab - 1}")
            )
        text = self.tokenizer.decode(ids.tolist(), skip_special_tokens=False)
        return pb_utils.InferenceResponse(
            output_tensors=[pb_utils.Tensor("text_output", np.array([text.encode("utf-8")], dtype=np.object_))]
        )

    def execute(self, requests):
        return [self._decode(request) for request in requests]
