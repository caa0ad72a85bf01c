"""Build (or resume) a FingerBench profile as a Ray job.

Submit to a running cluster from the project root (the working directory ships as the job's
runtime environment; the cluster's Python needs the package's dependencies, see cluster/):

    ray job submit --working-dir . -- python jobs/build_bench.py --profile cpu \
        --output s3://my-bucket/fingerbench/cpu

On one machine, without a cluster, the same script starts an embedded local Ray:

    python jobs/build_bench.py --profile smoke --output runs/bench/smoke

Arguments are those of ``nf-dist bench build`` (``--set``, ``--only``, ``--dry-run``,
``--metrics-port``, ...); under ``ray job submit`` the job joins the cluster through
``RAY_ADDRESS``. ``--smoke`` builds the smoke profile (``--profile smoke``); the resolved
catalog lands in the output as ``profile.json``.
"""

import sys

from nf_dist.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "build", *sys.argv[1:]]))
