"""The quickstart as a job script (it runs in one process and needs no Ray cluster).

python jobs/quickstart.py [--config FILE] [--set key=value ...]
"""

import sys

from nf_dist.cli import main

if __name__ == "__main__":
    sys.exit(main(["quickstart", *sys.argv[1:]]))
