"""star-track benchmarks: accuracy, stability (jitter / lag) and speed. Run as ``python -m benchmarks.<name>``."""
