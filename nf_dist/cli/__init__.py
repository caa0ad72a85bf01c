"""The ``nf-dist`` command: parse, dispatch to the subcommand's handler, one error boundary.

Every :class:`~nf_dist.errors.NfDistError` and every expected I/O error (files, S3, Parquet,
images) ends as one line ``nf-dist: error: ...`` on stderr and exit status 2; anything else is a
bug and keeps its traceback; a reader that leaves early (``| head``) ends the command quietly.
The console script leaves through :func:`run`, which exits without the interpreter's teardown
after an error: torch and pyarrow tearing down together sometimes abort (status 134) after a
message was already printed.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from nf_dist.cli.commands import HANDLERS
from nf_dist.cli.parser import build_parser
from nf_dist.errors import NfDistError

logger = logging.getLogger("nf_dist")
USER_ERROR = 2
SIGPIPE_STATUS = 141  # 128 + SIGPIPE, as a shell reports a writer whose reader left


def expected_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean bad input or an unreachable resource, not a bug in nf-dist."""
    errors: list[type[BaseException]] = [NfDistError, OSError]
    try:  # optional at this layer: only present with the S3 extras
        from botocore.exceptions import BotoCoreError, ClientError

        errors += [BotoCoreError, ClientError]
    except ImportError:
        pass
    import pyarrow  # only on the error path: the CLI's start stays light
    from PIL import UnidentifiedImageError

    errors += [pyarrow.ArrowException, UnidentifiedImageError]
    return tuple(errors)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``nf-dist`` command; returns its exit status (2 for a user error)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # httpx logs every request at INFO; the verifier reports its own progress.
    logging.getLogger("httpx").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    try:
        return HANDLERS[args.command](args)
    except BrokenPipeError:
        # Whoever read stdout has gone (``| head``): not the command's error. Point stdout at
        # the null device so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return SIGPIPE_STATUS
    except expected_errors() as exc:
        message = str(exc).strip() or type(exc).__name__
        print(f"nf-dist: error: {message}", file=sys.stderr)
        return USER_ERROR


def run() -> None:
    """The console script: exit with :func:`main`'s status; after an error, without teardown."""
    code = main()
    if code != 0:
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(code)
    sys.exit(code)


__all__ = ["build_parser", "main", "run"]
