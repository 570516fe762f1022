"""Operating fedstream: ``fedstream status``, Prometheus metrics, partition checks."""
