"""Serve a model as a label-returning JSON API: ``nf-dist serve``.

The model is opened like a suspect file (:mod:`nf_dist.verification.files`) and served by
uvicorn on ``host:port`` (127.0.0.1 by default), with optional injected faults
(:mod:`nf_dist.verification.server`). It stands in for a deployed suspect in tests, demos and the
HTTP benchmark.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import uvicorn

from nf_dist.errors import ConfigError
from nf_dist.verification.files import SuspectFile, open_suspect
from nf_dist.verification.server import Faults, Limits, create_app

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeConfig:
    """``nf-dist serve``: the model, where to listen, the token, class names, faults and the
    limits it holds requests to."""

    model: SuspectFile = field(default_factory=lambda: SuspectFile(uri=""))
    host: str = "127.0.0.1"
    port: int = 8000
    token_env: str | None = None
    class_names: tuple[str, ...] = ()
    faults: Faults = field(default_factory=Faults)
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        if not 0 <= self.port < 65536:
            raise ConfigError(f"port must be in [0, 65536), got {self.port}")


def run_serve(config: ServeConfig) -> None:
    """Open the model and serve it until interrupted."""
    opened = open_suspect(config.model)
    token = None
    if config.token_env is not None:
        token = os.environ.get(config.token_env)
        if not token:
            raise ConfigError(f"token_env names ${config.token_env}, which is not set")
    app = create_app(
        opened.oracle,
        faults=config.faults,
        token=token,
        class_names=config.class_names,
        limits=config.limits,
    )
    if config.host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("serving on %s: reachable beyond this machine", config.host)
    logger.info("serving %s on http://%s:%d/predict", opened.identity, config.host, config.port)
    logger.info("limits: %s", config.limits)
    # Past limit_concurrency connections uvicorn answers 503 (a backstop: the bounded queue
    # answers 429 long before); idle keep-alive connections close after 5 s, and header bytes
    # stay under h11's 16 KiB.
    uvicorn.run(
        app,
        host=config.host,
        port=config.port,
        log_level="warning",
        limit_concurrency=1024,
        timeout_keep_alive=5,
    )
