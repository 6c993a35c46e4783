"""Print the third-party requirements of every iccache distribution, one per line.

Reads the build requirements and dependencies of each distribution's ``pyproject.toml``
(the folders listed under ``[tool.iccache]`` in the root ``pyproject.toml``),
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
DISTRIBUTIONS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["iccache"][
    "distributions"
]
for pyproject in (ROOT / name / "pyproject.toml" for name in DISTRIBUTIONS):
    project = tomllib.loads(pyproject.read_text())
    reqs += project["build-system"]["requires"]
    reqs += [d for d in project["project"]["dependencies"] if not OWN.match(d)]
print("\n".join(dict.fromkeys(reqs)))
