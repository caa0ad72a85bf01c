"""Prometheus metrics (declared once, in :mod:`nf_dist.telemetry.metrics`) and their endpoint."""
