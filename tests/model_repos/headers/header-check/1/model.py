import json

import triton_python_backend_utils as pb_utils

# The header a test sends with -H, and the value it must arrive with; Triton forwards it as a
# request parameter when started with --http-header-forward-pattern / --grpc-header-forward-pattern.
HEADER = "x-loadgen-check"
EXPECTED = "let-me-in"


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            parameters = {k.lower(): v for k, v in json.loads(request.parameters() or "{}").items()}
            if parameters.get(HEADER) != EXPECTED:
                error = pb_utils.TritonError(f"header {HEADER} missing or wrong; request parameters: {sorted(parameters)}")
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            tensor = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", tensor)]))
        return responses
