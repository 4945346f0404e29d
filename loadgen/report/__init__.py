"""Report writers: console, CSV and JSON."""

from loadgen.report.base import ReportWriter

__all__ = ["ReportWriter"]
