"""``python -m nf_dist.cli``: the ``nf-dist`` command."""

from nf_dist.cli import run

run()
