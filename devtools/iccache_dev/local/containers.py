"""Containers run with podman on this machine's host network, as the pods would run them.

``Containers`` starts each container detached, keeps its name, and removes them all when
the ``with`` block ends (their logs stay readable until then, and a failed wait shows
the log's tail). The security flags are the pods' (see
:func:`iccache_dev.local.images.security_args`): with ``read_only`` the only writable
places are the volumes passed in, as emptyDirs are in a pod.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from iccache_dev.local.images import security_args
from iccache_dev.local.process import ServiceError, wait_until


def _podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, check=False, timeout=timeout
    )


@dataclass(frozen=True)
class Volume:
    """A host folder or file in the container; ``writable`` only where a pod mounts an
    emptyDir (or a claim)."""

    host: Path
    target: str
    writable: bool = False

    def flag(self) -> str:
        return f"{self.host}:{self.target}:{'rw' if self.writable else 'ro'}"


@dataclass(frozen=True)
class Container:
    name: str

    def state(self) -> str:
        done = _podman("inspect", "--format", "{{.State.Status}}", self.name)
        return done.stdout.strip() if done.returncode == 0 else "absent"

    def exit_code(self) -> int | None:
        done = _podman("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", self.name)
        status, _, code = done.stdout.strip().partition(" ")
        return int(code) if status in ("exited", "stopped") else None

    def logs(self, tail: int = 40) -> str:
        done = _podman("logs", "--tail", str(tail), self.name)
        return (done.stdout + done.stderr).strip()

    def exec(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        return _podman("exec", self.name, *cmd)

    def wait_exit(self, timeout: float) -> int:
        wait_until(
            lambda: self.exit_code() is not None,
            timeout=timeout,
            interval=0.5,
            what=f"container {self.name} to exit",
        )
        code = self.exit_code()
        assert code is not None
        return code

    def wait_ready(self, ready: Callable[[], bool], timeout: float) -> float:
        def alive() -> str | None:
            state = self.state()
            if state == "running":
                return None
            return f"container {self.name} is {state}; its log ends:\n{self.logs()}"

        try:
            return wait_until(
                ready, timeout=timeout, interval=0.2, alive=alive, what=f"container {self.name}"
            )
        except ServiceError as err:
            raise ServiceError(f"{err}\nlog:\n{self.logs()}") from None

    def signal(self, name: str = "TERM") -> None:
        _podman("kill", "--signal", name, self.name)


# Volume kinds a pod can write to; configMaps, Secrets and projected volumes are read-only.
WRITABLE_VOLUMES = ("emptyDir", "persistentVolumeClaim", "hostPath", "ephemeral")


@dataclass(frozen=True)
class PodContainer:
    """What ``podman run`` needs from one container of a pod template (as the operator
    or the chart renders it): the security flags, and which mounts may be written."""

    user: str | None
    read_only: bool
    hardened: bool
    args: list[str]
    env: dict[str, str]
    mounts: dict[str, bool]  # mountPath -> writable

    @classmethod
    def of(cls, pod: Mapping[str, Any], container: Mapping[str, Any]) -> PodContainer:
        context = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
        uid, gid = context.get("runAsUser"), context.get("runAsGroup")
        user = None if uid is None else f"{uid}:{gid if gid is not None else uid}"
        if context.get("runAsNonRoot") and uid == 0:
            raise ValueError("runAsNonRoot with runAsUser 0 cannot start")
        dropped = "ALL" in context.get("capabilities", {}).get("drop", [])
        no_escalation = context.get("allowPrivilegeEscalation") is False
        if dropped != no_escalation:
            raise ValueError("only both or neither of drop ALL and no escalation are modelled")
        kinds = {v["name"]: v for v in pod.get("volumes", [])}
        claims: dict[str, Any] = {"persistentVolumeClaim": {}}  # a StatefulSet's templates
        mounts = {
            m["mountPath"]: not m.get("readOnly", False)
            and any(k in kinds.get(m["name"], claims) for k in WRITABLE_VOLUMES)
            for m in container.get("volumeMounts", [])
        }
        return cls(
            user=user,
            read_only=bool(context.get("readOnlyRootFilesystem")),
            hardened=dropped,
            args=list(container.get("args", [])),
            env={e["name"]: e["value"] for e in container.get("env", []) if "value" in e},
            mounts=mounts,
        )


def pod_templates(children: Sequence[Mapping[str, Any]]) -> dict[str, tuple[Any, Any]]:
    """Each workload's pod template among ``children`` (an operator plan's manifests),
    by the workload's name: (pod spec, its first container)."""
    out = {}
    for child in children:
        spec = child.get("spec", {})
        if child["kind"] == "CronJob":
            spec = spec["jobTemplate"]["spec"]
        template = spec.get("template")
        if template:
            out[child["metadata"]["name"]] = (template["spec"], template["spec"]["containers"][0])
    return out


class Containers:
    """The containers of one test (or session), removed together at the end."""

    def __init__(self, prefix: str = "icc") -> None:
        self._prefix = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self._started: list[Container] = []

    def run(
        self,
        role: str,
        image: str,
        args: Sequence[str] = (),
        *,
        user: str | None = "10001:10001",
        read_only: bool = True,
        hardened: bool = True,
        volumes: Sequence[Volume] = (),
        env: Mapping[str, str] | None = None,
        entrypoint: str | None = None,
        network: str = "host",
    ) -> Container:
        name = f"{self._prefix}-{role}"
        flags = ["--detach", "--name", name, "--network", network]
        flags += security_args(user, read_only=read_only, hardened=hardened)
        for volume in volumes:
            flags += ["--volume", volume.flag()]
        for key, value in (env or {}).items():
            flags += ["--env", f"{key}={value}"]
        if entrypoint is not None:
            flags += ["--entrypoint", entrypoint]
        done = _podman("run", *flags, image, *args)
        if done.returncode:
            raise ServiceError(f"podman run {name} ({image}) failed: {done.stderr.strip()}")
        container = Container(name)
        self._started.append(container)
        return container

    def run_as_pod(
        self,
        role: str,
        image: str,
        spec: PodContainer,
        folders: Mapping[str, Path],
        *,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        outside_spec: Sequence[Volume] = (),
        entrypoint: str | None = None,
    ) -> Container:
        """A container as its pod would run it: every mount of the pod spec needs a host
        folder in ``folders`` (writable only if the pod's volume is), nothing else is
        writable. ``env`` gives what the kubelet would resolve (Secret references), and
        ``$(NAME)`` in the arguments is expanded from the environment as the kubelet does;
        ``outside_spec`` is what the kubelet mounts by itself (the termination log) or a
        user adds (a model file)."""
        missing = sorted(set(spec.mounts) - set(folders))
        unknown = sorted(set(folders) - set(spec.mounts))
        if missing or unknown:
            raise ServiceError(f"{role}: mounts missing {missing}, not in the pod spec {unknown}")
        volumes = [Volume(folders[p], p, writable) for p, writable in spec.mounts.items()]
        environment = {**spec.env, **(env or {})}
        args = [*spec.args, *extra_args]
        for key, value in environment.items():
            args = [a.replace(f"$({key})", value) for a in args]
        return self.run(
            role,
            image,
            args,
            user=spec.user,
            read_only=spec.read_only,
            hardened=spec.hardened,
            volumes=[*volumes, *outside_spec],
            env=environment,
            entrypoint=entrypoint,
        )

    def remove_all(self) -> None:
        names = [c.name for c in self._started]
        if names:
            _podman("rm", "--force", "--time", "5", *names, timeout=60)
        self._started.clear()

    def __enter__(self) -> Containers:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove_all()
