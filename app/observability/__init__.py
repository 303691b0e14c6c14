"""Metrics for Prometheus and the log format, shared by the API and the workers."""
