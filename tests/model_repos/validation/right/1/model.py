"""right / wrong-one-in-ten: IN returned in five datatypes; every `wrong_every`-th request (0: none)
has OUT_FP32 off by one at element 2 of each batch item."""

import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        parameters = json.loads(args["model_config"])["parameters"]
        self.wrong_every = int(parameters["wrong_every"]["string_value"])
        self.executed = 0

    def execute(self, requests):
        responses = []
        for request in requests:
            self.executed += 1
            data = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            fp32 = data.copy()
            if self.wrong_every and self.executed % self.wrong_every == 0:
                fp32[:, 2] += 1
            text = np.array([[f"sum={row.sum():g}".encode()] for row in data], dtype=np.object_)
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUT_FP32", fp32),
                pb_utils.Tensor("OUT_FP16", data.astype(np.float16)),
                pb_utils.Tensor("OUT_INT32", np.rint(data).astype(np.int32)),
                pb_utils.Tensor("OUT_BOOL", data > 0),
                pb_utils.Tensor("OUT_BYTES", text),
            ]))
        return responses
