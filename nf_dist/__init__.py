"""nf-dist: NaturalFinger model fingerprinting as a distributed batch system on Ray."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("nf-dist")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
