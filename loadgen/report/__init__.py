"""The run's reports: console, CSV, JSON, JUnit, metrics and workers CSV, plots and HTML; each a RunListener."""
