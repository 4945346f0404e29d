import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """A running sum per correlation id. A request whose flags do not fit the sequences seen so far
    fails, so that a client that sends them wrong shows errors, not sums."""

    def initialize(self, args):
        self.sums = {}  # correlation id -> sum of the open sequence

    def execute(self, requests):
        return [self._one(request) for request in requests]

    def _one(self, request):
        def flag(name):
            return int(pb_utils.get_input_tensor_by_name(request, name).as_numpy().flat[0])

        value = pb_utils.get_input_tensor_by_name(request, "INPUT").as_numpy()
        corrid = flag("CORRID")
        if not flag("READY"):
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(f"sequence {corrid}: request not READY"))
        if flag("START"):
            self.sums[corrid] = 0  # a START on an open id begins a new sequence, as Triton allows
        elif corrid not in self.sums:
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(f"sequence {corrid}: continued but never started"))
        self.sums[corrid] += int(value.sum())
        total = self.sums[corrid]
        if flag("END"):
            del self.sums[corrid]
        return pb_utils.InferenceResponse([pb_utils.Tensor("SUM", np.full(value.shape, total, dtype=np.int32))])
