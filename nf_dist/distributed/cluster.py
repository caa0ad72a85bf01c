"""Connect to Ray: an embedded local instance on 127.0.0.1 by default, or a given cluster."""

from __future__ import annotations

import logging
import os

import ray
import ray._private.ray_constants as ray_constants

from nf_dist.hardware import free_cpus

logger = logging.getLogger(__name__)


def _loopback_only() -> None:
    """Make the embedded Ray's node IP 127.0.0.1, so every listener (GCS, raylet, workers,
    agents) binds to loopback. ``_node_ip_address="127.0.0.1"`` alone is not enough: Ray turns a
    loopback address into the machine's "reachable" one unless clusters are disabled, which
    is what this flag does (read by this process now, and by Ray's own processes, which inherit
    the environment)."""
    os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


def init_ray(address: str | None = None, *, num_cpus: int | None = None) -> None:
    """Start or join Ray once per process.

    Args:
        address: ``None`` starts an embedded single-node Ray whose listeners bind to 127.0.0.1;
            ``auto`` or ``host:port`` joins a running cluster (``ray start --head``, or the job's
            own cluster under ``ray job submit``, where ``RAY_ADDRESS`` is set).
        num_cpus: CPUs the embedded instance offers (None: those this process may run on, its
            affinity mask, not the machine's count: oversubscribed cores collapse throughput).
    """
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is None:
        _loopback_only()
        ray.init(
            address="local",
            num_cpus=num_cpus or free_cpus(),
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            logging_level=logging.WARNING,
            configure_logging=False,
        )
        logger.info(
            "started an embedded local Ray with %s CPUs", ray.cluster_resources().get("CPU")
        )
    else:
        ray.init(address=address, logging_level=logging.WARNING)
        logger.info("joined Ray at %s: %s", address, ray.cluster_resources())
