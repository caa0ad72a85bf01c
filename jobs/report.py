"""Write the Markdown report with plots for an evaluation as a Ray job.

    ray job submit --working-dir . -- python jobs/report.py \
        --set evaluation_uri=s3://my-bucket/eval/cpu --set output_uri=s3://my-bucket/reports/cpu

The report is drawn locally on the job's node and uploaded when ``output_uri`` is ``s3://``.
``--smoke`` reports on the smoke evaluation (nf_dist/configs/smoke/report.yaml).
"""

import sys

from nf_dist.cli import main

if __name__ == "__main__":
    sys.exit(main(["report", *sys.argv[1:]]))
