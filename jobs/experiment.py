"""The paper's experiments on a built FingerBench as a Ray job: every method's fingerprints, the
evaluation of all suspects (one Ray task each), stealthiness over 3 detector seeds, the report.

    ray job submit --working-dir . -- python jobs/experiment.py \
        --config jobs/configs/cpu_experiment.yaml --set bench_uri=s3://my-bucket/fingerbench/cpu \
        --set output_uri=s3://my-bucket/experiments/cpu

A killed run resumes: finished fingerprint sets are reused. Without a cluster the same command
starts an embedded local Ray.
"""

import sys

from nf_dist.cli import main

if __name__ == "__main__":
    sys.exit(main(["experiment", *sys.argv[1:]]))
