"""A decoupled model: each request answered by `responses` responses, the first `first_ms` after
the request came and each next one `gap_ms` after the one before; response i's OUT is IN + i (as
many elements as IN, so a response's tokens are IN's size). With `fail_after` N >= 0 an error
response takes the place of response N. The final flag travels with the last response, or alone
after it with `separate_final` (an empty final response, where the client asked for one)."""

import json
import threading
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        parameters = {k: v["string_value"] for k, v in json.loads(args["model_config"])["parameters"].items()}
        self.responses = int(parameters["responses"])
        self.first_s = float(parameters["first_ms"]) / 1e3
        self.gap_s = float(parameters["gap_ms"]) / 1e3
        self.fail_after = int(parameters.get("fail_after", "-1"))
        self.separate_final = parameters.get("separate_final", "false") == "true"

    def execute(self, requests):
        # A thread per request: requests in flight together are answered together, each on its
        # own schedule (execute returns at once, as a decoupled model may).
        for request in requests:
            data = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            threading.Thread(target=self._answer, args=(request.get_response_sender(), data, time.monotonic()), daemon=True).start()
        return None

    def _answer(self, sender, data, arrived_s):
        final = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
        # The first from the arrival (the thread may start late); each next from the one before,
        # so that a late thread's responses are late together, never bunched behind it.
        delay_s = arrived_s + self.first_s - time.monotonic()
        for i in range(self.responses):
            if i:
                delay_s = self.gap_s
            if delay_s > 0:
                time.sleep(delay_s)
            last = i == self.responses - 1
            if i == self.fail_after:
                sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"failed at response {i}")), flags=final)
                return
            response = pb_utils.InferenceResponse([pb_utils.Tensor("OUT", (data + i).astype(np.int32))])
            sender.send(response, flags=final if last and not self.separate_final else 0)
        if self.separate_final or not self.responses:
            sender.send(flags=final)
