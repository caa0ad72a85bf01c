"""A Ray Tune sweep of NaturalFinger's (or a baseline's) hyperparameters as a Ray job.

    ray job submit --working-dir . -- python jobs/tune.py --config jobs/configs/cpu_tune.yaml \
        --set bench_uri=s3://my-bucket/fingerbench/cpu --set storage_uri=s3://my-bucket/tune \
        --set output_uri=s3://my-bucket/tune/naturalfinger-results

Trials are scored on validation suspects, the best settings are exported as a config that
`nf-dist fingerprint` accepts, and both the tuned and the base settings are scored once on the
test suspects. Re-submitting the same config resumes the sweep. Without a cluster the same command
starts an embedded local Ray. ``--smoke`` runs three short trials on the smoke bench
(nf_dist/configs/smoke/tune.yaml).
"""

import sys

from nf_dist.cli import main

if __name__ == "__main__":
    sys.exit(main(["tune", *sys.argv[1:]]))
