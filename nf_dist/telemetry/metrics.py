"""Every nf-dist Prometheus metric, declared once: ``nf_`` prefix, units in the names.

Jobs expose them with :func:`serve_metrics` on a ``/metrics`` endpoint (bound to 127.0.0.1 unless
told otherwise); Prometheus scrapes it (see ``cluster/``).
"""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram, start_http_server

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

LATENT_STEPS = Counter("nf_latent_steps_total", "Latent optimisation steps taken")
LATENT_STEPS_PER_SECOND = Gauge(
    "nf_latent_steps_per_second", "Latent optimisation steps per second (last step)"
)
LATENT_SHARD_SECONDS = Histogram(
    "nf_latent_shard_gradient_seconds",
    "Seconds from sending the latents to a shard actor to having its gradient",
    ["shard"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
LATENT_LOSS = Gauge("nf_latent_loss", "Mean CW loss of the step's models", ["term"])
LATENT_SUCCESS_RATIO = Gauge(
    "nf_latent_success_ratio", "Share of (model, image) pairs at their target label this step"
)

EVAL_SUSPECTS_QUERIED = Counter(
    "nf_eval_suspects_queried_total", "Suspects an evaluation has queried (label-only)"
)

TUNE_TRIALS = Counter("nf_tune_trials_total", "Tune trials that ended", ["status"])
TUNE_REPORTS = Counter("nf_tune_reports_total", "Intermediate objective reports from Tune trials")
TUNE_BEST_OBJECTIVE = Gauge(
    "nf_tune_best_objective", "Best validation objective reported so far in the sweep", ["metric"]
)


def serve_metrics(port: int, address: str = "127.0.0.1") -> int:
    """Start the ``/metrics`` endpoint in a background thread; returns the bound port.

    ``port`` 0 picks a free port.
    """
    server, _ = start_http_server(port, addr=address)
    bound = int(server.server_port)
    logger.info("Prometheus metrics on http://%s:%d/metrics", address, bound)
    return bound
