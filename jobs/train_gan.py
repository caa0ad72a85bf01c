"""Train (or resume) the class-conditional GAN as a Ray job.

    ray job submit --working-dir . -- python jobs/train_gan.py --workers 4 \
        --set output_uri=s3://my-bucket/gans/sngan --set gan.steps=40000

``--workers N`` trains data-parallel on N Ray Train workers; ``--smoke`` trains a tiny GAN in
seconds (nf_dist/configs/smoke/gan.yaml). The resolved config lands beside the checkpoint.
"""

import sys

from nf_dist.cli import main

if __name__ == "__main__":
    sys.exit(main(["gan", "train", *sys.argv[1:]]))
