"""loadgen: a load-testing harness for NVIDIA Triton Inference Server."""

__version__ = "0.2.0"
