"""The runnable jobs: each a typed config and a ``run_*`` function the CLI and ``jobs/*.py`` call.

Pipelines compose the library (``data``, ``models``, ``fingerprint``, ``bench``, ``storage``) and
the Ray mechanics (``distributed``); nothing below imports a pipeline.
"""
