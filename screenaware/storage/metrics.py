"""Prometheus metrics of the storage layer (shared by workers like the web ones:
see :mod:`screenaware.web.metrics`, which serves them all at ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

BATCH_POINTS = Histogram(
    "screenaware_influx_batch_points",
    "Points per InfluxDB /write (group commit)",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000),
)
FLUSH_SECONDS = Histogram(
    "screenaware_influx_flush_seconds",
    "Time of one InfluxDB /write",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BACKEND_ERRORS = Counter(
    "screenaware_backend_errors_total", "Requests failed by a backing store", ["backend"]
)
