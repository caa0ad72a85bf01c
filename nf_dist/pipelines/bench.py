"""FingerBench as a job: ``nf-dist bench plan``, ``nf-dist bench build``, ``nf-dist bench status``.

The catalog (:mod:`nf_dist.bench.catalog`) and the Ray build (:mod:`nf_dist.bench.build`) live
with the benchmark; this module is what the command line runs: a profile's plan as text or JSON,
the dry-run task graph, the build with its report, and where a build stands
(:mod:`nf_dist.bench.status`).
"""

from __future__ import annotations

import json
from typing import Any

from nf_dist.bench.build import BuildConfig, BuildReport, build_bench, task_graph
from nf_dist.bench.catalog import Profile, load_profile
from nf_dist.bench.status import bench_status, status_json, status_lines

__all__ = [
    "BuildConfig",
    "BuildReport",
    "bench_status",
    "build_bench",
    "describe_build",
    "load_profile",
    "status_json",
    "status_lines",
]


def plan_lines(profile: Profile) -> list[str]:
    """A profile's resolved catalog, one model per line."""
    lines = [f"profile {profile.name}: {profile.counts()}"]
    for row in profile.models:
        lines.append(f"  {row.id:<34} {row.role:<9} {row.attack:<12} {row.arch:<16} {row.params}")
    if profile.ensembles:
        lines.append(f"ensembles (generation only, never scored): {len(profile.ensembles)}")
        for row in profile.ensembles:
            role = "surrogate" if row.role == "positive" else "reference"
            lines.append(f"  {row.id:<34} {role:<9} {row.attack:<12} {row.arch:<16}")
    return lines


def plan_json(profile: Profile) -> str:
    """A profile's resolved catalog as a JSON list of rows."""
    return json.dumps(profile.plan(), indent=1)


def dry_run(profile: Profile, only: tuple[str, ...]) -> tuple[str, str]:
    """The build's task graph as JSON, and a one-line summary of its GPU asks."""
    graph: list[dict[str, Any]] = task_graph(profile, only)
    gpus = sum(t["num_gpus"] for t in graph)
    summary = f"{len(graph)} tasks; GPU asks add up to {gpus:g} GPUs in all"
    return json.dumps({"profile": profile.name, "tasks": graph}, indent=1), summary


def describe_build(profile: Profile, config: BuildConfig, report: BuildReport) -> list[str]:
    """What a build did, and every model below its accuracy floor."""
    lines = [
        f"bench {profile.name} at {config.output_uri}: built {len(report.built)}, "
        f"already there {len(report.skipped)}, retries {report.retries}, "
        f"{report.wall_s:.0f}s"
    ]
    below = report.below_floor
    if below:
        lines.append(
            f"{len(below)} model(s) below their accuracy floor (a weak attack is not a "
            "credible theft; strengthen their recipes in the catalog):"
        )
        for check in below:
            lines.append(
                f"  {check.id:<34} test acc {check.test_accuracy:.3f} < floor {check.floor:.3f} "
                f"(of {check.reference})"
            )
    return lines
