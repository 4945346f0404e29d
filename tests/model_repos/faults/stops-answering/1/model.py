"""stops-answering: OUT = IN for the first `answers` requests an instance executes; from its next
one on, the instance blocks for good (sleeping, so it burns no CPU)."""

import json
import threading

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        parameters = json.loads(args["model_config"])["parameters"]
        self.answers = int(parameters["answers"]["string_value"])
        self.executed = 0

    def execute(self, requests):
        self.executed += len(requests)
        if self.executed > self.answers:
            threading.Event().wait()  # never set: the instance stops answering
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor("OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy())])
            for r in requests
        ]
