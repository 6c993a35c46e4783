"""``python -m iccache_sidecar``: the same as the ``iccache`` command."""

import sys

from iccache_sidecar.cli import main

sys.exit(main())
