"""loadgen: a load-testing harness for NVIDIA Triton Inference Server."""

__version__ = "0.1.0"
