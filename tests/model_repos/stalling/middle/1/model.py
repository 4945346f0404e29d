"""middle: OUT = IN, after sleeping stall_time_ms on every stall_every-th request it executes."""

import json
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        parameters = json.loads(args["model_config"])["parameters"]
        self.stall_every = int(parameters["stall_every"]["string_value"])
        self.stall_s = float(parameters["stall_time_ms"]["string_value"]) / 1e3
        self.executed = 0

    def execute(self, requests):
        responses = []
        for request in requests:
            # A counter, not a clock: the same requests stall at any load, so the tail is predictable.
            self.executed += 1
            if self.executed % self.stall_every == 0:
                time.sleep(self.stall_s)
            data = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", data)]))
        return responses
