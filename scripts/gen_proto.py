"""Generate the Python gRPC code from proto/ into sidecar/iccache_sidecar/gen/.

    python scripts/gen_proto.py            # write the committed files
    python scripts/gen_proto.py --out DIR  # write elsewhere (the drift test does this)

Generated imports are rewritten to live under the ``iccache_sidecar.gen`` package.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from grpc_tools import protoc  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
DEFAULT_OUT = ROOT / "sidecar" / "iccache_sidecar" / "gen"
PACKAGE = "iccache_sidecar.gen"


def generate(out: Path) -> list[Path]:
    protos = sorted(PROTO_DIR.rglob("*.proto"))
    out.mkdir(parents=True, exist_ok=True)
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *[str(p.relative_to(PROTO_DIR)) for p in protos],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    written = []
    for path in sorted(out.rglob("*")):
        if path.suffix not in {".py", ".pyi"}:
            continue
        text = re.sub(r"^from iccache\.", f"from {PACKAGE}.iccache.", path.read_text(), flags=re.M)
        path.write_text(text)
        written.append(path)
    for folder in [out, *[p for p in out.rglob("*") if p.is_dir()]]:
        init = folder / "__init__.py"
        if not init.exists():
            init.write_text("")
            written.append(init)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    for path in generate(args.out):
        print(path.relative_to(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
