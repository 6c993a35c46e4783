"""Print the third-party requirements of every iccache distribution, one per line.

Reads the build requirements and dependencies of each ``packages/*/pyproject.toml``,
leaves out the project's own distributions (installed from the checkout) and prints the
rest once each. Used by scripts/setup to fill the local wheelhouse before an offline
install.
"""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OWN = re.compile(r"^iccache(-[a-z]+)?\b")

reqs: list[str] = []
for pyproject in sorted((ROOT / "packages").glob("*/pyproject.toml")):
    project = tomllib.loads(pyproject.read_text())
    reqs += project["build-system"]["requires"]
    reqs += [d for d in project["project"]["dependencies"] if not OWN.match(d)]
print("\n".join(dict.fromkeys(reqs)))
