"""slow: OUT = IN after sleeping service_time_ms per request (sleeping burns no CPU)."""

import json
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        parameters = json.loads(args["model_config"])["parameters"]
        self.service_s = float(parameters["service_time_ms"]["string_value"]) / 1e3

    def execute(self, requests):
        responses = []
        for request in requests:
            time.sleep(self.service_s)
            data = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", data)]))
        return responses
