"""flaky: OUT = IN, except that every `fail_every`-th request fails with a Triton error."""

import json

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        parameters = json.loads(args["model_config"])["parameters"]
        self.fail_every = int(parameters["fail_every"]["string_value"])
        self.executed = 0

    def execute(self, requests):
        responses = []
        for request in requests:
            self.executed += 1
            if self.executed % self.fail_every == 0:
                error = pb_utils.TritonError(f"injected failure: request {self.executed} of flaky")
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            data = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", data)]))
        return responses
