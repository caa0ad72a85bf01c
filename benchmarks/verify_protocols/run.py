"""Benchmark: one suspect served five ways reaches the same verdict and p-value.

Usage (from the project root, after ``make run``):
    .venv/bin/python -m benchmarks.verify_protocols.run --run runs/quickstart

Each suspect (by default a held-out stolen model and a held-out independent one of the
quickstart) is verified as a model file, then served the five ways of
:mod:`benchmarks.deployments` (``nf-dist serve``, KServe V2 and V1, a TorchServe-style raw-image
API, a Ray Serve deployment taking multipart uploads) and verified over each with
``nf-dist verify``'s pipeline, cover traffic included. Recorded per suspect and way: matches,
matching rate, p-value, verdict, images on the wire, requests and seconds; and whether every way
agreed with the file. The null is calibrated on held-out independent models that are not
suspects here (never on generation or screening models).

Results go to ``<results>/verify_protocols.{json,md}`` (default
``benchmarks/verify_protocols/results``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import machine
from benchmarks.deployments import five_ways
from nf_dist.config import from_dict
from nf_dist.distributed.cluster import init_ray
from nf_dist.pipelines.verify import VerifyConfig, run_verify

RESULTS = Path(__file__).parent / "results"
SUSPECTS = ("ftll", "indep_resnet18_b")
CALIBRATION = ("indep_vgg16", "indep_shufflenet", "indep_vgg19")


def verify_once(run: Path, calibration: list[str], suspect: dict, evidence: Path) -> dict:
    """One ``nf-dist verify`` of one suspect; its row and evidence-record counts."""
    config = from_dict(
        VerifyConfig,
        {
            "fingerprints": str(run / "fingerprint.parquet"),
            "calibration": calibration,
            "suspects": [suspect],
            "evidence_dir": str(evidence),
        },
    )
    started = time.monotonic()
    row = run_verify(config)["suspects"][0]
    seconds = time.monotonic() - started
    (record_path,) = [p for p in evidence.glob("*.json")]
    record = json.loads(record_path.read_text())
    return {
        "matches": record["decision"]["matches"],
        "queries": record["decision"]["queries"],
        "matching_rate": row["matching_rate"],
        "p_value": row["p_value"],
        "verdict": record["decision"]["verdict"],
        "images_sent": record["suspect"].get("images_sent"),
        "images_retried": record["suspect"].get("images_retried"),
        "requests": record["suspect"].get("requests_this_run"),
        "seconds": round(seconds, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="runs/quickstart", help="a quickstart's output folder")
    parser.add_argument("--suspects", nargs="+", default=list(SUSPECTS))
    parser.add_argument("--calibrate", nargs="+", default=list(CALIBRATION))
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument("--note", default="", help="what else ran on the machine meanwhile")
    args = parser.parse_args(argv)
    run = Path(args.run)
    models = run / "models"
    calibration = [str(models / name) for name in args.calibrate]
    init_ray()
    suspects: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.suspects:
            checkpoint = str(models / name)
            ways = {
                "file": verify_once(
                    run, calibration, {"file": {"uri": checkpoint}}, Path(scratch) / f"{name}-file"
                )
            }
            with five_ways(checkpoint) as endpoints:
                for way, endpoint in endpoints.items():
                    folder = Path(scratch) / f"{name}-{way}"
                    ways[way] = verify_once(run, calibration, {"endpoint": endpoint}, folder)
                    print(f"{name} {way}: {ways[way]}", file=sys.stderr)
            reference = ways["file"]
            agree = all(
                (w["matches"], w["p_value"], w["verdict"])
                == (reference["matches"], reference["p_value"], reference["verdict"])
                for w in ways.values()
            )
            suspects[name] = {"ways": ways, "all_agree_with_file": agree}
    result = {
        "command": "python -m benchmarks.verify_protocols.run " + shlex.join(argv or sys.argv[1:]),
        "run": str(run),
        "calibration": args.calibrate,
        "machine": machine(),
        "meanwhile": args.note or "not stated",
        "suspects": suspects,
    }
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "verify_protocols.json").write_text(json.dumps(result, indent=2))
    (out / "verify_protocols.md").write_text(markdown(result))
    return 0 if all(s["all_agree_with_file"] for s in suspects.values()) else 1


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        "# One suspect, five deployments: the same verdict",
        "",
        f"Command: `{result['command']}` (fingerprints and models from `{result['run']}`; null "
        f"calibrated on {', '.join(result['calibration'])}, held-out independents).",
        f"Machine: {m['cpu_model']} ({', '.join(k for k, v in m['cpu_flags'].items() if v)}), "
        f"{m['cpu_count']} cores, torch {m['torch']}. Meanwhile: {result['meanwhile']}.",
        "Servers: `nf-dist serve` (nfdist), KServe's Python model server (oip-v2 and kserve-v1 on "
        "one port), a TorchServe-style raw-image API (standard-library HTTP server; no "
        "TorchServe here), a Ray Serve deployment (multipart upload, Hugging Face-style "
        "answer); `benchmarks/deployments/`. Cover traffic: one clean image per fingerprint.",
        "",
        "| suspect | way | matches | matching rate | p-value | verdict | images sent | "
        "retried | requests | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, suspect in result["suspects"].items():
        for way, row in suspect["ways"].items():
            lines.append(
                f"| {name} | {way} | {row['matches']}/{row['queries']} | "
                f"{row['matching_rate']:.4f} | {row['p_value']:.3g} | {row['verdict']} | "
                f"{row['images_sent'] if row['images_sent'] is not None else '-'} | "
                f"{row['images_retried'] if row['images_retried'] is not None else '-'} | "
                f"{row['requests'] if row['requests'] is not None else '-'} | {row['seconds']} |"
            )
    lines.append("")
    for name, suspect in result["suspects"].items():
        same = "yes" if suspect["all_agree_with_file"] else "NO"
        lines.append(
            f"- {name}: every way agrees with the model file (matches, p-value, verdict): {same}"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
