"""Benchmark: verifying a deployed suspect over HTTP, and the verdict's false-positive rate.

Usage (from the project root):
    .venv/bin/python -m benchmarks.verify_http.run --config benchmarks/verify_http/cpu.yaml

Two measurements on a built benchmark (``models.bench_uri``) and its fingerprint ``sets``:

1. **Transport.** One test suspect is served by ``nf-dist serve`` in its own process on a free
   loopback port; the headline set's fingerprints are asked through the HTTP client
   (:mod:`nf_dist.verification.http`: cover traffic, concurrency, rate limit as ``endpoint`` says)
   and through the in-process oracle. Recorded: queries per second of both, the client's overhead
   (ratio and seconds per query), and that both gave the same labels.
2. **Statistics.** The split ``nf-dist tune`` makes (the generation models excluded): the null is
   calibrated on the *validation* negatives only, then every *test* suspect is decided at each
   ``alphas`` (one look, and sequentially ``batch`` fingerprints per look). Recorded per set: the
   share of test negatives called stolen against the nominal rate, the true-positive rate, and the
   queries a sequential run spends on each positive. Answers are computed once per suspect
   in-process (the transport is measured in part 1).

Results go to ``<results>/<name>.{json,md}`` (default ``benchmarks/verify_http/results``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import numpy as np

from benchmarks.common import machine
from nf_dist.bench import Benchmark, load
from nf_dist.bench.selection import ModelSelection
from nf_dist.config import from_dict, load_config, to_dict
from nf_dist.data import load_dataset
from nf_dist.errors import ConfigError
from nf_dist.fingerprint.fingerprint_set import FingerprintSet, load_fingerprint_set
from nf_dist.models.inference import predict
from nf_dist.pipelines.tune import ThreeWaySplit, TuneJobConfig, three_way_split
from nf_dist.verification.decision import Decision, NullModel, SequentialTest, decide, fit_null
from nf_dist.verification.http import EndpointConfig, HttpOracle
from nf_dist.verification.oracles import model_oracle

RESULTS = Path(__file__).parent / "results"
#: Stands in for the served suspect's URL while the ``endpoint`` settings are validated.
PLACEHOLDER_URL = "http://127.0.0.1:1/predict"


@dataclass(frozen=True)
class VerifyHttpConfig:
    """What to measure (see the module docstring).

    Attributes:
        models: the benchmark and its generation models (kept out of calibration and scoring).
        validation_models, validation_fraction, split_seed: ``nf-dist tune``'s split.
        sets: name -> fingerprint set; ``headline`` names the one the top-level keys report.
        alphas: nominal false-positive rates; the first is the headline's.
        batch: fingerprints per look of the sequential test.
        http_suspect: the served test suspect (empty: the first positive of the test split).
        repeats: timed runs of each transport (the median is reported).
        endpoint: the HTTP client's settings (fields of ``EndpointConfig`` but ``url``).
        cover_uri, num_cover: the clean images sent as cover traffic.
    """

    name: str = "verify_http"
    models: ModelSelection = field(default_factory=ModelSelection)
    validation_models: tuple[str, ...] = ()
    validation_fraction: float = 0.3
    split_seed: int = 0
    sets: dict[str, str] = field(default_factory=dict)
    headline: str = ""
    alphas: tuple[float, ...] = (1e-3, 0.01, 0.05)
    batch: int = 10
    http_suspect: str = ""
    repeats: int = 5
    endpoint: dict[str, Any] = field(default_factory=dict)
    cover_uri: str = "../shared/data/cifar10/test.parquet"
    num_cover: int = 1000

    def __post_init__(self) -> None:
        if not self.models.bench_uri:
            raise ConfigError("models.bench_uri: name the built benchmark to verify against")
        if not self.sets:
            raise ConfigError("sets: name at least one fingerprint set (name: path.parquet)")
        if self.headline and self.headline not in self.sets:
            raise ConfigError(f"headline {self.headline!r} is not one of sets: {list(self.sets)}")
        if not self.alphas or not all(0 < a < 1 for a in self.alphas):
            raise ConfigError("alphas: list false-positive rates in (0, 1), the headline first")
        if self.batch < 1 or self.repeats < 1 or self.num_cover < 0:
            raise ConfigError("batch and repeats must be at least 1, num_cover at least 0")
        if "url" in self.endpoint:
            raise ConfigError("endpoint.url is the served suspect's; leave it out")
        self.client(PLACEHOLDER_URL)  # unknown or invalid client settings fail here

    @property
    def headline_set(self) -> str:
        return self.headline or next(iter(self.sets))

    def client(self, url: str) -> EndpointConfig:
        return from_dict(EndpointConfig, {**self.endpoint, "url": url}, "endpoint")


def split_of(config: VerifyHttpConfig, bench: Benchmark) -> ThreeWaySplit:
    """``nf-dist tune``'s three-way split of the benchmark."""
    tune = TuneJobConfig(
        models=config.models,
        validation_models=config.validation_models,
        validation_fraction=config.validation_fraction,
        split_seed=config.split_seed,
    )
    return three_way_split(bench.manifest.to_pylist(), tune)


def sequential(
    answers: np.ndarray, expected: np.ndarray, null: NullModel, alpha: float, batch: int
) -> Decision:
    """The decision ``nf-dist verify --sequential`` reaches on these answers, look by look."""
    test = SequentialTest(len(expected), null, alpha, batch)
    for size in test.look_sizes():
        decision = test.update(int((answers[:size] == expected[:size]).sum()), size)
        if decision.stolen is not None:
            return decision
    raise AssertionError("the last look always decides")


def set_statistics(
    fingerprints: FingerprintSet,
    answers: dict[str, np.ndarray],
    roles: dict[str, str],
    split: ThreeWaySplit,
    config: VerifyHttpConfig,
) -> dict[str, Any]:
    """The null from the validation negatives; FPR, TPR and queries on the test suspects."""
    n, expected = len(fingerprints), fingerprints.y_orig
    matches = {i: int((answers[i] == expected).sum()) for i in answers}
    calibration = [i for i in split.validation if roles[i] == "negative"]
    null = fit_null([matches[i] / n for i in calibration], n)
    negatives = [i for i in split.test if roles[i] == "negative"]
    positives = [i for i in split.test if roles[i] == "positive"]
    by_alpha = []
    for alpha in config.alphas:
        one_look = {i: decide(matches[i], n, null, alpha) for i in split.test}
        looks = {i: sequential(answers[i], expected, null, alpha, config.batch) for i in split.test}
        spent = [looks[i].queries for i in positives]
        by_alpha.append(
            {
                "nominal_false_positive_rate": alpha,
                "one_look": _rates(one_look, negatives, positives),
                "sequential": {
                    **_rates(looks, negatives, positives),
                    "queries_per_positive": {
                        "median": statistics.median(spent) if spent else None,
                        "max": max(spent, default=None),
                    },
                },
            }
        )
    return {
        "method": fingerprints.method,
        "num_fingerprints": n,
        "calibration_models": calibration,
        "null": null.to_dict(),
        "scored_suspects": list(split.test),
        "matching_rates": {i: k / n for i, k in matches.items()},
        "by_alpha": by_alpha,
    }


def _rates(
    decisions: dict[str, Decision], negatives: list[str], positives: list[str]
) -> dict[str, Any]:
    false = [i for i in negatives if decisions[i].stolen]
    true = [i for i in positives if decisions[i].stolen]
    return {  # None: no suspect of that role among the test suspects
        "false_positive_rate": len(false) / len(negatives) if negatives else None,
        "false_positives": false,
        "num_negatives": len(negatives),
        "true_positive_rate": len(true) / len(positives) if positives else None,
        "num_positives": len(positives),
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def serving(checkpoint: str, timeout_s: float = 120.0) -> Iterator[str]:
    """``nf-dist serve CHECKPOINT`` in its own process on a free loopback port; yields the
    ``/predict`` URL and stops that process (by its own handle) on exit."""
    port = _free_port()
    command = [sys.executable, "-m", "nf_dist.cli", "serve", checkpoint, "--port", str(port)]
    with tempfile.TemporaryFile() as errors:  # the server's stderr, quoted if it fails
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors)
        try:
            _wait_until_healthy(server, f"http://127.0.0.1:{port}", errors, timeout_s)
            yield f"http://127.0.0.1:{port}/predict"
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def _wait_until_healthy(
    server: subprocess.Popen, base: str, errors: IO[bytes], timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while server.poll() is None:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"nf-dist serve did not answer on {base} within {timeout_s} s")
        time.sleep(0.2)
    errors.seek(0)
    said = errors.read().decode(errors="replace").strip().splitlines()[-3:]
    raise RuntimeError(f"nf-dist serve exited with {server.returncode}: {' / '.join(said)}")


def transport(config: VerifyHttpConfig, bench: Benchmark, suspect: str) -> dict[str, Any]:
    """Queries per second of the headline set through HTTP and in-process (see part 1)."""
    images = load_fingerprint_set(config.sets[config.headline_set]).inputs()
    cover = load_dataset(config.cover_uri, split="test").images[: config.num_cover]
    local = model_oracle(bench.model(suspect))
    expected = local(images)  # also warms the model up
    local_s = [_timed(local, images)[1] for _ in range(config.repeats)]
    http_s, sent, requests, agree = [], 0, 0, True
    with serving(bench.stem(suspect)) as url:
        settings = config.client(url)
        warm = HttpOracle(settings, cover)
        warm(images[:1])  # the server's first answer pays its lazy start-up
        warm.close()
        for _ in range(config.repeats):
            client = HttpOracle(settings, cover)  # a fresh log: every image is sent again
            labels, seconds = _timed(client, images)
            client.close()
            http_s.append(seconds)
            sent, requests = client.sent, client.requests
            agree = agree and bool(np.array_equal(labels, expected))
    n, http, inproc = len(images), statistics.median(http_s), statistics.median(local_s)
    return {
        "suspect": suspect,
        "set": config.headline_set,
        "num_queries": n,
        "images_sent_per_run": sent,
        "requests_per_run": requests,
        "client": to_dict(settings) | {"url": "http://127.0.0.1:<free port>/predict"},
        "http": {"seconds": http_s, "queries_per_s": n / http, "images_per_s": sent / http},
        "in_process": {"seconds": local_s, "queries_per_s": n / inproc},
        "overhead_ratio": http / inproc,
        "overhead_s_per_query": (http - inproc) / n,
        "same_labels": agree,
    }


def _timed(oracle: Any, images: np.ndarray) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    result = oracle(images)
    return result, time.perf_counter() - started


def run(config: VerifyHttpConfig, command: str) -> dict[str, Any]:
    """Both measurements (see the module docstring); returns the record."""
    load_before = os.getloadavg()
    bench = load(str(config.models.bench_uri))
    roles = {row["id"]: row["role"] for row in bench.manifest.to_pylist()}
    split = split_of(config, bench)
    sets = {name: load_fingerprint_set(uri) for name, uri in config.sets.items()}
    answers: dict[str, dict[str, np.ndarray]] = {name: {} for name in sets}
    for model_id in (*split.validation, *split.test):
        model = bench.model(model_id)
        for name, fingerprints in sets.items():
            answers[name][model_id] = predict(model, fingerprints.inputs())
    per_set = {
        name: set_statistics(fingerprints, answers[name], roles, split, config)
        for name, fingerprints in sets.items()
    }
    positives = [i for i in split.test if roles[i] == "positive"]
    suspect = config.http_suspect or next(iter(positives), "")
    if not suspect:
        raise ConfigError("the test split has no positive to serve; name http_suspect")
    headline = per_set[config.headline_set]["by_alpha"][0]
    return {
        "command": command,
        "machine": machine(),
        "load_average_1m": {"before": load_before[0], "after": os.getloadavg()[0]},
        "config": to_dict(config),
        "headline": {"set": config.headline_set, "alpha": config.alphas[0], "mode": "one look"},
        "false_positive_rate": headline["one_look"]["false_positive_rate"],
        "nominal_false_positive_rate": config.alphas[0],
        "true_positive_rate": headline["one_look"]["true_positive_rate"],
        "split": {
            "generation": split.generation,
            "validation": split.validation,
            "test": split.test,
        },
        "sets": per_set,
        "transport": transport(config, bench, suspect),
    }


def render(record: dict[str, Any]) -> str:
    """The record for people."""
    head, moved = record["headline"], record["transport"]
    lines = [
        f"# Verifying deployed suspects: `{record['config']['name']}`",
        "",
        f"Command: `{record['command']}`  ",
        f"Machine: {record['machine']}  ",
        f"1-minute load average before/after: {record['load_average_1m']['before']:.2f} / "
        f"{record['load_average_1m']['after']:.2f} (other work on the machine slows both paths).",
        "",
        f"Headline: set `{head['set']}`, one look at nominal FPR {head['alpha']:g}: measured FPR "
        f"**{record['false_positive_rate']:.3f}**, TPR {record['true_positive_rate']:.3f}.",
        "",
        "## Transport",
        "",
        f"{moved['num_queries']} fingerprints of `{moved['set']}` asked of `{moved['suspect']}` "
        f"({moved['images_sent_per_run']} images with cover in {moved['requests_per_run']} "
        f"requests per run); median of {len(moved['http']['seconds'])} runs; same labels both "
        f"ways: {moved['same_labels']}.",
        "",
        "| path | queries/s | seconds per run |",
        "|---|---|---|",
        f"| HTTP (nf-dist serve, loopback) | {moved['http']['queries_per_s']:.1f} | "
        f"{statistics.median(moved['http']['seconds']):.3f} |",
        f"| in-process oracle | {moved['in_process']['queries_per_s']:.1f} | "
        f"{statistics.median(moved['in_process']['seconds']):.3f} |",
        "",
        f"Client overhead: {moved['overhead_ratio']:.1f}x, "
        f"{1000 * moved['overhead_s_per_query']:.2f} ms per query.",
        "",
        "## False-positive rate on held-out suspects",
        "",
        "Null calibrated on the validation negatives only; scored on the test suspects.",
        "",
        "| set | fingerprints | calibration negatives | nominal FPR | FPR (one look) | "
        "TPR (one look) | FPR (seq.) | TPR (seq.) | queries per positive (median / max) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, stats in record["sets"].items():
        for row in stats["by_alpha"]:
            one, seq = row["one_look"], row["sequential"]
            spent = seq["queries_per_positive"]
            lines.append(
                f"| {name} | {stats['num_fingerprints']} | {len(stats['calibration_models'])} | "
                f"{row['nominal_false_positive_rate']:g} | {one['false_positive_rate']:.3f} "
                f"({len(one['false_positives'])}/{one['num_negatives']}) | "
                f"{one['true_positive_rate']:.3f} | {seq['false_positive_rate']:.3f} | "
                f"{seq['true_positive_rate']:.3f} | {spent['median']} / {spent['max']} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--results", default=str(RESULTS), help="where <name>.{json,md} go")
    args = parser.parse_args(argv)
    config = load_config(VerifyHttpConfig, args.config, args.overrides)
    command = " ".join(["python -m benchmarks.verify_http.run", *(argv or sys.argv[1:])])
    record = run(config, command)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{config.name}.json").write_text(json.dumps(record, indent=2))
    (results / f"{config.name}.md").write_text(render(record))
    return record


if __name__ == "__main__":
    main()
