"""Every nf-dist Prometheus metric, declared once: ``nf_`` prefix, units in the names.

Jobs expose them with :func:`serve_metrics` on a ``/metrics`` endpoint (bound to 127.0.0.1 unless
told otherwise); Prometheus scrapes it (see ``cluster/``).
"""

from __future__ import annotations

import logging

from prometheus_client import Counter, Histogram, start_http_server

logger = logging.getLogger(__name__)

BENCH_MODELS_BUILT = Counter(
    "nf_bench_models_built_total", "Benchmark models built and committed", ["attack"]
)
BENCH_MODELS_SKIPPED = Counter(
    "nf_bench_models_skipped_total", "Benchmark models already built and verified", ["attack"]
)
BENCH_MODELS_FAILED = Counter(
    "nf_bench_models_failed_total", "Benchmark model builds that failed for good", ["attack"]
)
BENCH_MODELS_RETRIED = Counter(
    "nf_bench_models_retried_total", "Benchmark model build attempts that were retried", ["attack"]
)
BENCH_MODEL_SECONDS = Histogram(
    "nf_bench_model_build_seconds",
    "Wall seconds to build one benchmark model",
    ["attack"],
    buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 3600, 7200),
)


def serve_metrics(port: int, address: str = "127.0.0.1") -> int:
    """Start the ``/metrics`` endpoint in a background thread; returns the bound port.

    ``port`` 0 picks a free port.
    """
    server, _ = start_http_server(port, addr=address)
    bound = int(server.server_port)
    logger.info("Prometheus metrics on http://%s:%d/metrics", address, bound)
    return bound
