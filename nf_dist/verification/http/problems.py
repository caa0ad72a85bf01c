"""What can go wrong with one request, split by what the client does next."""

from __future__ import annotations

from nf_dist.errors import NfDistError


class RetryableError(NfDistError):
    """The request may succeed if sent again: no complete answer within the deadline, a broken
    connection, a malformed or corrupt answer. The message names what happened."""


class EndpointError(NfDistError):
    """The endpoint's answer shows it is misconfigured or hostile (a redirect, an answer past
    the size cap, a label out of range): retrying would not help, and the message says what to
    change."""
