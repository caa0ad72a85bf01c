"""``python -m nf_dist.cli``: the ``nf-dist`` command."""

import sys

from nf_dist.cli import main

sys.exit(main())
