"""The quickstart as a job script (it runs in one process and needs no Ray cluster).

    ray job submit --working-dir . -- python jobs/quickstart.py [--config FILE] [--set k=v]

or, on one machine, ``python jobs/quickstart.py``. The quickstart is itself the small whole run,
so it has no ``--smoke``; its resolved config lands in ``output_dir/config.yaml``.
"""

import sys

from nf_dist.cli import main

if __name__ == "__main__":
    sys.exit(main(["quickstart", *sys.argv[1:]]))
