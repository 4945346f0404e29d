"""stalling: OUT = IN after service_time_ms, or stall_time_ms once every stall_period_ms."""

import json
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {key: float(value["string_value"]) / 1e3 for key, value in config["parameters"].items()}
        self.service_s = parameters["service_time_ms"]
        self.stall_s = parameters["stall_time_ms"]
        self.period_s = parameters["stall_period_ms"]
        self.last_stall = time.monotonic()

    def execute(self, requests):
        responses = []
        for request in requests:
            # Time-based, not every Nth request: the stall rate is the same whatever the load.
            if time.monotonic() - self.last_stall >= self.period_s:
                self.last_stall = time.monotonic()
                time.sleep(self.stall_s)
            else:
                time.sleep(self.service_s)
            data = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", data)]))
        return responses
