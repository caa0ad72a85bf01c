"""Deployed suspects over HTTP: the endpoint config, the protocols, the bounded client, the
query log and the oracle that ties them together."""

from nf_dist.verification.http.config import PROTOCOL_NAMES, EndpointConfig, ImageEncoding
from nf_dist.verification.http.images import image_key, png_bytes
from nf_dist.verification.http.oracle import HttpOracle
from nf_dist.verification.http.protocols import PROTOCOLS, Protocol
from nf_dist.verification.http.querylog import BudgetSpentError, QueryLog

__all__ = [
    "PROTOCOLS",
    "PROTOCOL_NAMES",
    "BudgetSpentError",
    "EndpointConfig",
    "HttpOracle",
    "ImageEncoding",
    "Protocol",
    "QueryLog",
    "image_key",
    "png_bytes",
]
