"""The ``nf-dist`` command: parse, dispatch to the subcommand's handler, one error boundary."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from nf_dist.cli.commands import HANDLERS
from nf_dist.cli.parser import build_parser
from nf_dist.errors import NfDistError

logger = logging.getLogger("nf_dist")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nf-dist`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return HANDLERS[args.command](args)
    except NfDistError as exc:
        print(f"nf-dist: error: {exc}", file=sys.stderr)
        return 2


__all__ = ["build_parser", "main"]
