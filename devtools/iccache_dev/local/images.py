"""iccache's container images, built and run without a Docker engine.

``python -m iccache_dev.local.images build`` (``make images``) builds every image from
the Dockerfiles a user builds with ``docker build``, with buildah (an OCI builder from
Debian's packages):

- a base image made from Debian's packages (mmdebstrap, bookworm, Python 3.11), imported
  once and cached by its recipe, so no registry is needed;
- the four images on top of it, each tagged ``localhost/iccache/NAME:VERSION`` and
  exported as an OCI archive to ``build/images/`` for containerd, kind or a registry.

buildah's layer cache keys every step on its inputs, so a rebuild with nothing changed
takes seconds. pip inside a build uses this machine's pip settings (index, CA bundle)
and the project's wheelhouse, passed in at build time; nothing of them is written into
an image. ``security_args`` gives ``podman run`` the security settings that the
operator and the chart put on their pods.
"""

from __future__ import annotations

import argparse
import filecmp
import hashlib
import importlib.metadata
import json
import os
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from iccache_dev.local import assets
from iccache_dev.local.onnx_export import ensure_minilm_onnx

ROOT = Path(__file__).resolve().parents[3]
ARCHIVES = ROOT / "build" / "images"
STAGED_MODEL = ROOT / "build" / "embedding-model"
VERSION = importlib.metadata.version("iccache-sidecar")
TOOLS = ("buildah", "podman", "mmdebstrap", "runc")
DEBIAN_TOOLS = (*TOOLS, "uidmap", "containernetworking-plugins")
RUNTIME = "runc"  # crun refuses this machine's hybrid cgroup layout; runc runs it
# Limits that this machine allows (podman's default raises them past what it may).
ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096")
BUILD_MOUNT = "/run/iccache-build"


@dataclass(frozen=True)
class ImageSpec:
    name: str
    dockerfile: str  # relative to the repository root, which is the build context
    summary: str


IMAGES = (
    ImageSpec("operator", "operator/Dockerfile", "the operator (kopf)"),
    ImageSpec("sidecar", "sidecar/Dockerfile", "router and replay job (ONNX, no torch)"),
    ImageSpec("redis", "images/redis/Dockerfile", "Redis 8.2 with the search module"),
    ImageSpec("llama-server", "images/llama-server/Dockerfile", "llama.cpp's server, CPU"),
)
BY_NAME = {spec.name: spec for spec in IMAGES}


def reference(name: str, version: str = VERSION) -> str:
    return f"localhost/iccache/{name}:{version}"


# The base: Debian bookworm, Python 3.11 and CA certificates, without documentation.
BASE_REF = "localhost/iccache/python:3.11-bookworm"
BASE_LABEL = "io.iccache.base-recipe"
BASE_RECIPE = (
    "--variant=minbase",
    "--include=python3,python3-venv,python-is-python3,ca-certificates",
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    '--customize-hook=rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*',
    "bookworm",
)


def base_key() -> str:
    return hashlib.sha256(json.dumps(BASE_RECIPE).encode()).hexdigest()[:16]


def security_args(user: str | None, *, read_only: bool, hardened: bool = True) -> list[str]:
    """``podman run`` flags for a pod's security context. ``user`` (None keeps the
    image's) and ``read_only`` (no writable place of podman's own either: pods mount
    emptyDirs where they write) as the pod spec says; ``hardened``: every capability
    dropped and no privilege escalation, as on every pod of the operator and the chart."""
    # --passwd=false: no /etc/passwd entry for the user, as in a pod (podman adds one).
    flags = ["--runtime", RUNTIME, *ULIMITS, "--passwd=false"]
    if user:
        flags += ["--user", user]
    if read_only:
        flags += ["--read-only", "--read-only-tmpfs=false"]
    if hardened:
        flags += ["--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
    return flags


class BuildError(RuntimeError):
    pass


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def _log(message: str) -> None:
    print(f"[images] {message}", file=sys.stderr, flush=True)


def _run(cmd: Sequence[str], *, quiet: bool = False) -> str:
    """Runs a tool; its output streams to the terminal unless ``quiet``, when it is
    returned (and shown only if the tool fails)."""
    if not quiet:
        done = subprocess.run(list(cmd), stdout=sys.stderr, stderr=sys.stderr, check=False)
        if done.returncode:
            raise BuildError(f"{cmd[0]} exited with {done.returncode}: {' '.join(cmd)}")
        return ""
    out = subprocess.run(list(cmd), capture_output=True, text=True, check=False)
    if out.returncode:
        raise BuildError(f"{' '.join(cmd)} exited with {out.returncode}:\n{out.stderr.strip()}")
    return out.stdout


def image_id(ref: str) -> str | None:
    done = subprocess.run(
        ["podman", "image", "inspect", "--format", "{{.Id}}", ref],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or None if done.returncode == 0 else None


def image_size(ref: str) -> int:
    return int(_run(["podman", "image", "inspect", "--format", "{{.Size}}", ref], quiet=True))


def ensure_base() -> str:
    """The base image, made from Debian's packages the first time its recipe is seen
    (about a minute); the root filesystem's archive is kept in the cache folder too."""
    key = base_key()
    label = f'{{{{ index .Labels "{BASE_LABEL}" }}}}'
    have = subprocess.run(
        ["podman", "image", "inspect", "--format", label, BASE_REF],
        capture_output=True,
        text=True,
        check=False,
    )
    if have.returncode == 0 and have.stdout.strip() == key:
        return BASE_REF
    tarball = assets.cache_dir() / "images" / f"debian-bookworm-python-{key}.tar"
    if not tarball.is_file():
        _log(f"making the base root filesystem from Debian's packages ({tarball.name})")
        tarball.parent.mkdir(parents=True, exist_ok=True)
        partial = tarball.with_suffix(".partial")
        _run(["mmdebstrap", "--quiet", "--format=tar", *BASE_RECIPE, str(partial)])
        partial.rename(tarball)
    _log(f"importing the base image {BASE_REF}")
    _run(
        [
            "podman",
            "import",
            "--change",
            f"LABEL {BASE_LABEL}={key}",
            "--change",
            "ENV LANG=C.UTF-8",
            "--change",
            'CMD ["python3"]',
            str(tarball),
            BASE_REF,
        ],
        quiet=True,
    )
    return BASE_REF


def _host_ca_bundle() -> Path | None:
    for candidate in (
        os.environ.get("PIP_CERT"),
        _pip_config("global.cert"),
        ssl.get_default_verify_paths().cafile,
        "/etc/ssl/certs/ca-certificates.crt",
    ):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def _pip_config(key: str) -> str | None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "config", "get", key],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or None if done.returncode == 0 else None


def pip_build_options() -> list[str]:
    """pip's settings for the RUN steps: this machine's index (if one is configured),
    its CA bundle and the project's wheelhouse, mounted read-only for the build only."""
    options: list[str] = []
    index = os.environ.get("PIP_INDEX_URL") or _pip_config("global.index-url")
    if index:
        options += ["--build-arg", f"PIP_INDEX_URL={index}"]
    ca = _host_ca_bundle()
    if ca:
        options += ["--volume", f"{ca}:{BUILD_MOUNT}/ca.crt:ro"]
        options += ["--build-arg", f"PIP_CERT={BUILD_MOUNT}/ca.crt"]
    wheels = assets.cache_dir() / "wheels"
    if wheels.is_dir():
        options += ["--volume", f"{wheels}:{BUILD_MOUNT}/wheels:ro"]
        options += ["--build-arg", f"PIP_FIND_LINKS={BUILD_MOUNT}/wheels"]
    return options


def stage_model() -> Path:
    """Copies the exported ONNX embedder to build/embedding-model, where the data-plane
    Dockerfile takes it from (only when it changed, so the layer cache holds)."""
    source = ensure_minilm_onnx()
    if STAGED_MODEL.is_dir():
        names = sorted(p.name for p in source.iterdir() if p.is_file())
        same, _, _ = filecmp.cmpfiles(source, STAGED_MODEL, names, shallow=False)
        if same == names and sorted(os.listdir(STAGED_MODEL)) == names:
            return STAGED_MODEL
        shutil.rmtree(STAGED_MODEL)
    shutil.copytree(source, STAGED_MODEL)
    return STAGED_MODEL


@dataclass(frozen=True)
class Built:
    name: str
    ref: str
    size: int
    seconds: float
    archive: Path | None


def build_image(
    spec: ImageSpec, base: str, pip_options: Sequence[str], *, export: bool, quiet: bool
) -> Built:
    """One image; ``pip_options`` are :func:`pip_build_options` (read once per build)."""
    ref = reference(spec.name)
    start = time.monotonic()
    _log(f"building {ref} from {spec.dockerfile}")
    _run(
        [
            "buildah",
            "bud",
            "--layers",
            "--isolation",
            "oci",
            "--runtime",
            RUNTIME,
            "--network",
            "host",
            *ULIMITS,
            "--build-arg",
            f"BASE_IMAGE={base}",
            *pip_options,
            "--file",
            str(ROOT / spec.dockerfile),
            "--tag",
            ref,
            str(ROOT),
        ],
        quiet=quiet,
    )
    archive = _export(spec.name, ref) if export else None
    return Built(spec.name, ref, image_size(ref), time.monotonic() - start, archive)


def _export(name: str, ref: str) -> Path:
    """An OCI archive of the image (``kind load image-archive``, ``ctr images import``,
    ``skopeo copy oci-archive:...``), rewritten only when the image changed."""
    ARCHIVES.mkdir(parents=True, exist_ok=True)
    archive = ARCHIVES / f"{name}-{VERSION}.oci.tar"
    stamp = archive.with_suffix(".id")
    current = image_id(ref)
    if archive.is_file() and stamp.is_file() and stamp.read_text() == current:
        return archive
    partial = archive.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    _run(["podman", "save", "--format", "oci-archive", "--output", str(partial), ref], quiet=True)
    partial.rename(archive)
    stamp.write_text(current or "")
    return archive


def build(names: Sequence[str] = (), *, export: bool = True, quiet: bool = False) -> list[Built]:
    """Builds the named images (all when none are named), base first; ``quiet`` keeps
    the builder's output unless it fails."""
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise BuildError(f"no image named {', '.join(unknown)}; the images: {', '.join(BY_NAME)}")
    absent = missing_tools()
    if absent:
        raise BuildError(
            f"missing {', '.join(absent)}: install Debian's packages "
            f"{' '.join(DEBIAN_TOOLS)} (make setup does)"
        )
    specs = [BY_NAME[n] for n in names] if names else list(IMAGES)
    base = ensure_base()
    if any(spec.name == "sidecar" for spec in specs):
        stage_model()
    pip_options = pip_build_options()
    return [build_image(spec, base, pip_options, export=export, quiet=quiet) for spec in specs]


def _table(built: Sequence[Built]) -> str:
    rows = [f"{'image':<40} {'size':>9} {'time':>8}  archive"]
    for b in built:
        archive = b.archive.relative_to(ROOT) if b.archive else "-"
        rows.append(f"{b.ref:<40} {b.size / 1e6:>7.0f}MB {b.seconds:>7.1f}s  {archive}")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m iccache_dev.local.images", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True)
    make = verbs.add_parser("build", help="build the images (all, or the ones named)")
    make.add_argument("names", nargs="*", metavar="NAME", help=", ".join(BY_NAME))
    make.add_argument("--no-export", action="store_true", help="skip the OCI archives")
    make.add_argument(
        "--if-tools",
        action="store_true",
        help="exit 0 with a note when the builder is not installed (make test uses this)",
    )
    verbs.add_parser("stage-model", help="put the ONNX embedder in build/embedding-model")
    verbs.add_parser("list", help="the images and their references")
    args = parser.parse_args(argv)
    try:
        if args.verb == "build" and args.if_tools and missing_tools():
            print(f"images: not built, {', '.join(missing_tools())} not installed", file=sys.stderr)
        elif args.verb == "build":
            start = time.monotonic()
            built = build(args.names, export=not args.no_export)
            print(_table(built))
            print(f"built {len(built)} images in {time.monotonic() - start:.0f} s")
        elif args.verb == "stage-model":
            print(stage_model())
        else:
            for spec in IMAGES:
                print(f"{reference(spec.name):<40} {spec.dockerfile:<34} {spec.summary}")
    except BuildError as err:
        print(f"images: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
