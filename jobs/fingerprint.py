"""Generate a NaturalFinger fingerprint set as a Ray job, the models sharded over actors.

Submit to a running cluster from the project root:

    ray job submit --working-dir . -- python jobs/fingerprint.py --engine ray --num-shards 4 \
        --config my_fingerprint.yaml

The config holds ``gan_uri``, ``positives`` and ``negatives`` (checkpoint URIs, local or s3://)
and the ``fingerprint`` settings; ``--set key=value`` overrides any of them. Without a cluster the
same command starts an embedded local Ray (``--engine local`` needs no Ray at all). ``--smoke``
runs the smoke recipe (nf_dist/configs/smoke/fingerprint.yaml); the resolved config lands beside
the set as ``<output>.config.yaml``.
"""

import sys

from nf_dist.cli import main

if __name__ == "__main__":
    sys.exit(main(["fingerprint", *sys.argv[1:]]))
