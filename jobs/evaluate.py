"""Evaluate fingerprint sets on a built FingerBench as a Ray job (one task per suspect).

    ray job submit --working-dir . -- python jobs/evaluate.py --config eval.yaml \
        --set bench_uri=s3://my-bucket/fingerbench/cpu --set output_uri=s3://my-bucket/eval/cpu

The config names the fingerprint sets (``fingerprints: {naturalfinger: URI, ipguard: URI}``) and
the models used to generate them (``generation_models``), which are kept out of the headline
metrics. Without a cluster the same command starts an embedded local Ray. ``--smoke`` evaluates
the smoke set on the smoke bench (nf_dist/configs/smoke/evaluate.yaml); the resolved config lands
in the output folder as ``config.yaml``.
"""

import sys

from nf_dist.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
