"""The evidence record of one verification: what was asked, of whom, what came back, what it
means, and with which tool, as JSON (for machines) and Markdown (for people).

Recorded: the fingerprint set's SHA-256 and its creation record (method, settings, version), the
suspect's identity (its URL, or its file's SHA-256), every answered query (timestamp and label,
from the query log) or, for an in-process model, the answers themselves, the matching rate, the
p-value, the null it was computed under, the decision at the chosen false-positive rate, the
queries spent, the tool's version and git SHA, and the machine (CPU model and flags). Never
recorded: tokens or other secrets.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from nf_dist import __version__
from nf_dist.fingerprint.fingerprint_set import FingerprintSet
from nf_dist.hardware import machine_record
from nf_dist.storage.checkpoints import git_sha
from nf_dist.storage.uri import check_name, join_within, read_bytes, write_bytes_atomic
from nf_dist.verification.decision import Decision, NullModel


def set_digest(uri: str) -> str:
    """The SHA-256 of a fingerprint set's file, as the evidence cites it."""
    return hashlib.sha256(read_bytes(uri)).hexdigest()


def build_record(
    set_uri: str,
    fingerprints: FingerprintSet,
    suspect: dict[str, Any],
    decision: Decision,
    null: NullModel,
    queries: list[dict[str, Any]],
) -> dict[str, Any]:
    """The record (see the module docstring); ``suspect`` holds its name and identity."""
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "tool": {"name": "nf-dist", "version": __version__, "git_sha": git_sha()},
        "machine": machine_record(),
        "fingerprint_set": {
            "uri": set_uri,
            "sha256": set_digest(set_uri),
            "method": fingerprints.method,
            "num_fingerprints": len(fingerprints),
            "num_classes": fingerprints.num_classes,
            "config": fingerprints.config,
        },
        "suspect": suspect,
        "decision": {
            "verdict": {True: "stolen", False: "independent", None: "undecided"}[decision.stolen],
            "matching_rate": decision.matching_rate,
            "matches": decision.matches,
            "queries": decision.queries,
            "p_value": decision.p_value,
            "false_positive_rate": decision.alpha,
        },
        "null": null.to_dict(),
        "queries": queries,
    }


def write_evidence(folder: str, name: str, record: dict[str, Any]) -> str:
    """Write ``<name>.json`` and ``<name>.md`` into ``folder``; returns the JSON's URI."""
    safe = check_name(name.replace("/", "_").replace(":", "_")[-128:].lstrip("._-") or "suspect")
    uri = join_within(folder, f"{safe}.json")
    write_bytes_atomic(uri, json.dumps(record, indent=2).encode())
    write_bytes_atomic(join_within(folder, f"{safe}.md"), markdown(record).encode())
    return uri


def markdown(record: dict[str, Any]) -> str:
    """The record for people."""
    decision, fset, null = record["decision"], record["fingerprint_set"], record["null"]
    suspect = record["suspect"]
    return "\n".join(
        [
            f"# Verification of {suspect['name']}",
            "",
            f"**Verdict: {decision['verdict'].upper()}** at a false-positive rate of "
            f"{decision['false_positive_rate']:g}: p-value {decision['p_value']:.3g} under the "
            'null "this model is independent".',
            "",
            f"- suspect: `{suspect['identity']}` ({suspect['kind']})",
            f"- fingerprint set: `{fset['uri']}`, sha256 `{fset['sha256']}`, "
            f"{fset['num_fingerprints']} {fset['method']} fingerprints",
            f"- matched {decision['matches']} of {decision['queries']} fingerprints asked "
            f"(matching rate {decision['matching_rate']:.3f})",
            f"- null: independent models agree at rate ~ Beta({null['a']:.2f}, {null['b']:.2f}), "
            f"mean {null['mean']:.3f} (the upper 95% bound of {null['calibration_models']} "
            f"calibration models' mean {null['calibration_mean']:.3f})",
            f"- queries recorded: {len(record['queries'])}"
            + (
                f"; query log sha256 `{suspect['query_log_sha256']}`"
                if suspect.get("query_log_sha256")
                else ""
            )
            + (
                f"; {suspect['answers_resumed']} answers resumed from an earlier run's log"
                if suspect.get("answers_resumed")
                else ""
            ),
            *(
                [
                    f"- images on the wire ({suspect['protocol']}): {suspect['images_sent']} "
                    f"sent, {suspect['images_retried']} of them retries, "
                    f"{suspect['images_answered']} answered (cover included, all runs)"
                ]
                if "images_sent" in suspect
                else []
            ),
            f"- tool: nf-dist {record['tool']['version']} "
            f"({record['tool']['git_sha'] or 'no git'}), {record['created']}",
            "",
        ]
    )
