"""``python -m iccache_dataplane``: the same as the ``iccache`` command."""

import sys

from iccache_dataplane.cli import main

sys.exit(main())
