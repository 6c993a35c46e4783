"""Print the third-party requirements of iccache (from pyproject.toml) one per line.

Used by scripts/setup to fill the local wheelhouse before an offline install.
"""

import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
project = tomllib.loads((ROOT / "pyproject.toml").read_text())
build = project["build-system"]["requires"]
deps = list(project["project"]["dependencies"])
for extra in sys.argv[1:]:
    deps += project["project"]["optional-dependencies"][extra]
print("\n".join(dict.fromkeys(build + deps)))
