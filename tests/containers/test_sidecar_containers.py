"""The data plane in containers, run from the pod templates the operator renders for the
CPU sample: Redis and two llama.cpp servers from the project's images, the router
answering the official OpenAI client through its container, and the replay job run to
completion from the CronJob's template. Each container gets its pod's security settings
and arguments; writable paths only where the pod mounts an emptyDir or a claim. The
only changes to what the operator renders: loopback ports (every container shares the
host network) and the local models (SmolLM2 small, Gemma 3 270M large)."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml
from openai import OpenAI

from iccache_contract import names
from iccache_contract.settings import RouterSettings
from iccache_dev.local import assets
from iccache_dev.local.containers import (
    Container,
    Containers,
    PodContainer,
    Volume,
    pod_templates,
)
from iccache_dev.local.process import free_port, http_ok, wait_until
from iccache_operator import api
from iccache_operator.children.common import Owner
from iccache_operator.children.replay import TERMINATION_LOG
from iccache_operator.children.router import CONFIG_DIR, REDIS_PASSWORD_ENV
from iccache_operator.crd import CRD_FILE
from iccache_operator.plan import plan

SAMPLE = CRD_FILE.parent / "samples" / "cpu-llamacpp.yaml"
OWNER = Owner("demo", "default", "0")
MODELS = {"small": assets.SMOLLM2_135M, "large": assets.GEMMA3_270M}


@dataclass
class Stack:
    pods: Containers
    settings: RouterSettings
    templates: dict[str, tuple[dict[str, Any], dict[str, Any]]]
    folders: dict[str, Path]
    router: Container
    redis: redis.Redis
    password: str
    workdir: Path
    image: str

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.server.http_port}/v1"

    def stored(self) -> int:
        return int(self.redis.ft(self.settings.redis.index_name).info()["num_docs"])


def sample_spec(llama_image: str, redis_image: str) -> api.InContextCacheSpec:
    """The CPU sample with this machine's model files and the local images."""
    raw = yaml.safe_load(SAMPLE.read_text())["spec"]
    raw["cache"]["managed"]["image"] = redis_image
    for role, model in MODELS.items():
        # The file is mounted where a source would put it (the real-node e2e test uses the
        # sources themselves).
        raw["models"][role].pop("source", None)
        raw["models"][role] |= {"model": f"/models/{model.path().name}", "image": llama_image}
    raw["models"]["large"]["args"] = ["--chat-template", "gemma"]  # the file has none
    # Gemma 3 270M is a base model: its 12-token answers are cut, and kept only so; the
    # test reads what the cache did.
    raw["cache"]["storeCut"] = True
    raw.setdefault("router", {})["decisionDetails"] = "full"
    return api.InContextCacheSpec.model_validate(raw)


def emptydir(path: Path, uid: int) -> Path:
    """A host folder standing in for an emptyDir (or a claim) that ``uid`` writes."""
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, uid, uid)
    return path


@pytest.fixture(scope="module")
def stack(images: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("dataplane")
    spec = sample_spec(images["llama-server"], images["redis"])
    planned = plan(OWNER, spec, images["sidecar"])
    templates = pod_templates(planned.apply)
    with Containers("icc-dp") as pods:
        password = secrets.token_hex(12)
        redis_port = free_port()
        pod, box = templates["demo-redis"]
        store = pods.run_as_pod(
            "redis",
            box["image"],
            PodContainer.of(pod, box),
            {"/data": emptydir(workdir / "redis-data", pod["securityContext"]["runAsUser"])},
            extra_args=["--bind", "127.0.0.1", "--port", str(redis_port)],
            env={REDIS_PASSWORD_ENV: password},
        )
        client = redis.Redis(host="127.0.0.1", port=redis_port, password=password)

        def pong() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        store.wait_ready(pong, timeout=60)
        # The pod's own probe works in the image (sh, redis-cli, grep).
        probe = box["readinessProbe"]["exec"]["command"]
        ran = store.exec(*probe[:2], probe[2].replace("redis-cli", f"redis-cli -p {redis_port}"))
        assert ran.returncode == 0, ran.stderr

        ports = {}
        for role, model in MODELS.items():
            pod, box = templates[f"demo-{role}"]
            ports[role] = free_port()
            user = pod["securityContext"]["runAsUser"]
            server = pods.run_as_pod(
                f"model-{role}",
                box["image"],
                PodContainer.of(pod, box),
                {"/tmp": emptydir(workdir / f"model-{role}-tmp", user)},
                extra_args=["--host", "127.0.0.1", "--port", str(ports[role]), "--threads", "1"],
                outside_spec=[Volume(model.path(), f"/models/{model.path().name}")],
            )
            server.wait_ready(lambda p=ports[role]: http_ok(f"http://127.0.0.1:{p}/health"), 120)

        # The settings the operator renders, pointed at the loopback ports.
        raw = yaml.safe_load(planned.settings_yaml)
        for role in MODELS:
            raw[role]["base_url"] = f"http://127.0.0.1:{ports[role]}/v1"
        raw["redis"]["url"] = f"redis://127.0.0.1:{redis_port}"
        raw["server"] |= {"host": "127.0.0.1", "http_port": free_port(), "grpc_port": free_port()}
        raw["routing"]["exploration_rate"] = 0.0
        settings = RouterSettings.model_validate(raw)
        config = workdir / "config"
        config.mkdir()
        (config / "router.yaml").write_text(yaml.safe_dump(raw))
        folders = {CONFIG_DIR: config}
        pod, box = templates["demo-router"]
        uid = pod["securityContext"]["runAsUser"]
        router = pods.run_as_pod(
            "router",
            box["image"],
            PodContainer.of(pod, box),
            {**folders, "/tmp": emptydir(workdir / "router-tmp", uid)},
            env={REDIS_PASSWORD_ENV: password},
        )
        http = f"http://127.0.0.1:{settings.server.http_port}"
        router.wait_ready(lambda: http_ok(http + names.READY_PATH), timeout=120)
        yield Stack(
            pods, settings, templates, folders, router, client, password, workdir, box["image"]
        )


def test_router_container_answers_the_openai_client_and_stores_examples(stack: Stack) -> None:
    oa = OpenAI(base_url=stack.base_url, api_key="unused", max_retries=0, timeout=120)
    seed = oa.chat.completions.create(
        model=stack.settings.large.model,  # naming the large model sends the request there
        messages=[{"role": "user", "content": "What is the capital city of Australia?"}],
        max_tokens=12,
    )
    assert seed.choices[0].message.content
    assert (seed.model_extra or {})["iccache"]["route"] == "large"
    # The large model's answer is admitted to the cache in Redis, after the response.
    wait_until(lambda: stack.stored() >= 1, timeout=30, what="the example stored in Redis")

    stream = oa.chat.completions.create(
        model="iccache",
        messages=[{"role": "user", "content": "Which city is the capital of Australia?"}],
        max_tokens=12,
        stream=True,
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()
    # The paraphrase went to the small model with the stored example as context.
    decisions = [c.model_extra["iccache"] for c in chunks if (c.model_extra or {}).get("iccache")]
    assert decisions, chunks
    assert decisions[0]["route"] == "small", decisions[0]
    assert len(decisions[0]["examples"]) == 1

    metrics = httpx.get(f"http://127.0.0.1:{stack.settings.server.http_port}/metrics").text
    assert 'iccache_requests_total{route="small"' in metrics


def test_router_container_runs_as_10001_and_writes_only_where_mounted(stack: Stack) -> None:
    status = stack.router.exec("cat", "/proc/1/status").stdout
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert fields["Uid"].split()[:2] == ["10001", "10001"]
    assert fields["Gid"].split()[:2] == ["10001", "10001"]
    assert int(fields["CapEff"], 16) == 0  # every capability dropped
    assert fields["NoNewPrivs"].strip() == "1"
    for path in ("/opt/iccache/x", "/etc/x", "/var/tmp/x", "/run/x", "/x", f"{CONFIG_DIR}/x"):
        denied = stack.router.exec("sh", "-c", f"echo x > {path}")
        assert denied.returncode != 0, path
        assert "Read-only file system" in denied.stderr, (path, denied.stderr)
    assert stack.router.exec("sh", "-c", "echo x > /tmp/x").returncode == 0


def test_replay_container_runs_to_completion_and_writes_its_summary(stack: Stack) -> None:
    assert stack.stored() >= 1  # the first test seeded the cache
    summary = stack.workdir / "termination-log"
    summary.write_text("")
    pod, box = stack.templates["demo-replay"]
    assert box["terminationMessagePath"] == TERMINATION_LOG
    os.chown(summary, pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsUser"])
    job = stack.pods.run_as_pod(
        "replay",
        box["image"],
        PodContainer.of(pod, box),
        {**stack.folders, "/tmp": emptydir(stack.workdir / "replay-tmp", 10001)},
        env={REDIS_PASSWORD_ENV: stack.password},
        # The kubelet mounts the termination log, writable, where the pod spec says.
        outside_spec=[Volume(summary, TERMINATION_LOG, writable=True)],
    )
    assert job.wait_exit(timeout=300) == 0, job.logs()
    report = json.loads(summary.read_text())
    assert report["status"] == "completed", report
    assert report[names.SUMMARY_LINE]


def test_embedder_loads_with_no_network_at_all(images: dict[str, str]) -> None:
    """The image's embedder never reaches for a model hub: it loads and embeds in a
    container whose only network interface is its own loopback."""
    with Containers("icc-offline") as pods:
        box = pods.run(
            "embed",
            images["sidecar"],
            [
                "-c",
                "from iccache_sidecar.embedding import load_encoder;"
                "print(load_encoder(None).encode(['no network here']).shape)",
            ],
            entrypoint="python",
            network="none",
        )
        assert box.wait_exit(timeout=120) == 0, box.logs()
        assert "(1, 384)" in box.logs()
