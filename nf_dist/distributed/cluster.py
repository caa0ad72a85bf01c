"""Connect to Ray: an embedded local instance on 127.0.0.1 by default, or a given cluster."""

from __future__ import annotations

import logging
import os

import ray

logger = logging.getLogger(__name__)


def init_ray(address: str | None = None, *, num_cpus: int | None = None) -> None:
    """Start or join Ray once per process.

    Args:
        address: ``None`` starts an embedded single-node Ray whose listeners bind to 127.0.0.1;
            ``auto`` or ``host:port`` joins a running cluster (``ray start --head``, or the job's
            own cluster under ``ray job submit``, where ``RAY_ADDRESS`` is set).
        num_cpus: CPUs the embedded instance offers (None: the machine's).
    """
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is None:
        ray.init(
            address="local",
            num_cpus=num_cpus,
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
