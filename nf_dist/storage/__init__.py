"""Where artefacts live: local folders or any fsspec URL (``s3://bucket/prefix``)."""

from nf_dist.storage.uri import exists, join, read_bytes, write_bytes_atomic

__all__ = ["exists", "join", "read_bytes", "write_bytes_atomic"]
