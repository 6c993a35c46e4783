"""Every child manifest, built from specs without a cluster."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from iccache_contract.settings import BackendSettings, RouterSettings
from iccache_operator.api import InContextCacheSpec
from iccache_operator.children.common import Owner, SpecError
from iccache_operator.plan import plan, referenced_secrets, retained_claims, unplanned
from iccache_operator.status import (
    Observed,
    Replicas,
    compute_conditions,
    last_replay,
    merge_conditions,
)

SAMPLES = Path(__file__).resolve().parents[2] / "crds" / "samples"
OWNER = Owner("demo", "ml", "uid-123")
IMAGE = "example/sidecar:1"


def sample(name: str) -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load((SAMPLES / name).read_text())["spec"]
    return spec


def build(spec: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    p = plan(OWNER, InContextCacheSpec.model_validate(spec), IMAGE)
    return {(m["kind"], m["metadata"]["name"]): m for m in p.apply + p.create_only}


def test_cpu_sample_builds_every_child_with_owner_and_labels() -> None:
    children = build(sample("cpu-llamacpp.yaml"))
    assert set(children) == {
        ("ServiceAccount", "demo-iccache"),
        ("Deployment", "demo-small"),
        ("Service", "demo-small"),
        ("NetworkPolicy", "demo-small"),
        ("Deployment", "demo-large"),
        ("Service", "demo-large"),
        ("NetworkPolicy", "demo-large"),
        ("StatefulSet", "demo-redis"),
        ("Service", "demo-redis"),
        ("NetworkPolicy", "demo-redis"),
        ("Secret", "demo-redis-auth"),
        ("ConfigMap", "demo-router-config"),
        ("Deployment", "demo-router"),
        ("Service", "demo-router"),
        ("CronJob", "demo-replay"),
    }
    for m in children.values():
        (ref,) = m["metadata"]["ownerReferences"]
        assert ref["uid"] == "uid-123"
        assert ref["controller"] is True
        assert m["metadata"]["namespace"] == "ml"
        assert m["metadata"]["labels"]["app.kubernetes.io/instance"] == "demo"


def test_llamacpp_model_server_args_ports_and_probes() -> None:
    dep = build(sample("cpu-llamacpp.yaml"))[("Deployment", "demo-small")]
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert c["image"].startswith("ghcr.io/ggml-org/llama.cpp")
    assert c["args"][:2] == ["--model", "/models/SmolLM2-135M-Instruct.Q4_1.gguf"]
    assert "--ctx-size" in c["args"]
    assert "2048" in c["args"]
    assert c["ports"] == [{"name": "http", "containerPort": 8000}]
    assert c["readinessProbe"]["httpGet"]["path"] == "/health"
    assert c["resources"]["requests"] == {"cpu": "1", "memory": "1Gi"}
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_vllm_models_are_scheduled_to_their_gpu_pools() -> None:
    children = build(sample("gpu-vllm.yaml"))
    large = children[("Deployment", "demo-large")]
    pod = large["spec"]["template"]["spec"]
    assert large["spec"]["replicas"] == 2
    assert pod["nodeSelector"] == {"iccache.dev/pool": "gpu-b"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    (c,) = pod["containers"]
    assert c["resources"]["limits"] == {"nvidia.com/gpu": "2"}
    assert c["image"].startswith("vllm/vllm-openai")
    assert c["args"][-2:] == ["--tensor-parallel-size", "2"]
    assert c["args"][c["args"].index("--max-model-len") :][:2] == ["--max-model-len", "4096"]


def test_router_settings_are_what_the_router_reads() -> None:
    children = build(sample("cpu-llamacpp.yaml"))
    text = children[("ConfigMap", "demo-router-config")]["data"]["router.yaml"]
    settings = RouterSettings.model_validate(yaml.safe_load(text))
    assert settings.small.base_url == "http://demo-small.ml.svc:8000/v1"
    assert settings.small.cost_per_token == 0.2
    assert settings.redis.url == "redis://demo-redis.ml.svc:6379"
    assert settings.redis.password_env == "REDIS_PASSWORD"
    router = children[("Deployment", "demo-router")]["spec"]["template"]["spec"]
    env = {e["name"]: e for e in router["containers"][0]["env"]}
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "demo-redis-auth"
    assert env["ICCACHE_CONFIG"]["value"] == "/etc/iccache/router.yaml"


def router_backends(spec: dict[str, Any]) -> RouterSettings:
    text = build(spec)[("ConfigMap", "demo-router-config")]["data"]["router.yaml"]
    return RouterSettings.model_validate(yaml.safe_load(text))


@pytest.mark.parametrize(
    ("engine", "replicas", "args", "env", "busy_at"),
    [
        ("llamacpp", 1, [], [], 4),  # llama.cpp's automatic slot count
        ("llamacpp", 3, ["--parallel", "2"], [], 6),  # per replica, times replicas
        ("llamacpp", 1, ["-np=8"], [], 8),
        ("llamacpp", 1, ["-np", "-1"], [], 4),  # -1 is "auto"
        ("llamacpp", 1, [], [{"name": "LLAMA_ARG_N_PARALLEL", "value": "3"}], 3),
        ("llamacpp", 1, ["-np", "5"], [{"name": "LLAMA_ARG_N_PARALLEL", "value": "3"}], 5),
        ("vllm", 2, [], [], 512),
        ("vllm", 1, ["--max-num-seqs", "32", "--max-num-seqs=64"], [], 64),  # last one wins
        ("vllm", 0, ["--max-num-seqs", "32"], [], 32),  # scaled to zero: still one's worth
    ],
)
def test_router_counts_a_model_busy_at_the_engines_parallel_sequences(
    engine: str, replicas: int, args: list[str], env: list[dict[str, str]], busy_at: int
) -> None:
    spec = sample("cpu-llamacpp.yaml")
    spec["models"]["large"] = {
        "engine": engine,
        "model": "m",
        "replicas": replicas,
        "args": args,
        "env": env,
    }
    assert router_backends(spec).large.max_in_flight == busy_at


def test_max_in_flight_set_by_the_user_wins_and_external_models_keep_the_router_default() -> None:
    spec = sample("cpu-llamacpp.yaml")
    spec["models"]["small"]["maxInFlight"] = 1
    spec["models"]["small"]["args"] = ["--parallel", "8"]
    spec["models"]["large"] = {
        "engine": "external",
        "model": "gpt-large",
        "endpoint": "https://llm.example/v1",
    }
    settings = router_backends(spec)
    assert settings.small.max_in_flight == 1
    assert settings.large.max_in_flight == BackendSettings.model_fields["max_in_flight"].default


def test_unreadable_parallel_sequences_is_a_spec_error_naming_the_model() -> None:
    spec = sample("cpu-llamacpp.yaml")
    spec["models"]["small"]["args"] = ["--parallel", "many"]
    with pytest.raises(SpecError, match=r"models\.small: .*whole number, got 'many'"):
        build(spec)


def test_changed_settings_change_the_config_hash_and_roll_the_router() -> None:
    base = sample("cpu-llamacpp.yaml")
    changed = copy.deepcopy(base)
    changed["retrieval"] = {"maxExamples": 5}
    scaled = copy.deepcopy(base)
    scaled["router"]["replicas"] = 5

    def hash_of(spec: dict[str, Any]) -> str:
        dep = build(spec)[("Deployment", "demo-router")]
        return str(dep["spec"]["template"]["metadata"]["annotations"]["iccache.dev/config-hash"])

    assert hash_of(base) != hash_of(changed)
    assert hash_of(base) == hash_of(scaled)  # replicas are not configuration
    rotated = plan(OWNER, InContextCacheSpec.model_validate(base), IMAGE, "llm-key@42").apply
    (router,) = [
        m for m in rotated if (m["kind"], m["metadata"]["name"]) == ("Deployment", "demo-router")
    ]
    assert router["spec"]["template"]["metadata"]["annotations"]["iccache.dev/config-hash"] != (
        hash_of(base)
    )  # a new version of a Secret the routers read at start rolls them
    assert build(scaled)[("Deployment", "demo-router")]["spec"]["replicas"] == 5


def test_external_model_and_external_cache_create_no_servers() -> None:
    spec = sample("cpu-llamacpp.yaml")
    spec["models"]["large"] = {
        "engine": "external",
        "model": "gpt-large",
        "endpoint": "https://llm.example/v1/",
        "apiKeySecretRef": {"name": "llm-key", "key": "token"},
    }
    spec["cache"] = {"mode": "external", "external": {"url": "redis://cache:6379"}}
    children = build(spec)
    kinds = {k for k, _ in children}
    assert ("Deployment", "demo-large") not in children
    assert "StatefulSet" not in kinds
    assert "Secret" not in kinds
    policies = {name for kind, name in children if kind == "NetworkPolicy"}
    assert policies == {"demo-small"}  # the managed model's; no Redis, no large model
    text = children[("ConfigMap", "demo-router-config")]["data"]["router.yaml"]
    settings = RouterSettings.model_validate(yaml.safe_load(text))
    assert settings.large.base_url == "https://llm.example/v1"
    assert settings.large.api_key_env == "ICCACHE_LARGE_API_KEY"
    assert settings.redis.url == "redis://cache:6379"
    refs = referenced_secrets(InContextCacheSpec.model_validate(spec))
    assert refs == [("spec.models.large.apiKeySecretRef", "llm-key", "token")]


def test_replay_cronjob_and_network_policy() -> None:
    children = build(sample("cpu-llamacpp.yaml"))
    cron = children[("CronJob", "demo-replay")]["spec"]
    assert cron["concurrencyPolicy"] == "Forbid"
    assert cron["schedule"] == "0 3 * * *"
    job = cron["jobTemplate"]["spec"]
    assert job["activeDeadlineSeconds"] == 3600
    container = job["template"]["spec"]["containers"][0]
    assert container["image"] == IMAGE  # same image as the router
    assert container["args"] == ["replay", "--summary-file", "/dev/termination-log"]
    assert container["terminationMessagePath"] == "/dev/termination-log"
    # The budgets reach the job through the same settings file as the router's.
    spec = sample("cpu-llamacpp.yaml")
    spec["replay"] = {"budgetRequests": 7, "budgetTokens": 900, "lowLoadThreshold": 0.1}
    text = build(spec)[("ConfigMap", "demo-router-config")]["data"]["router.yaml"]
    replay = RouterSettings.model_validate(yaml.safe_load(text)).replay
    assert (replay.budget_requests, replay.budget_tokens, replay.low_load) == (7, 900, 0.1)
    policy = children[("NetworkPolicy", "demo-redis")]["spec"]
    allowed = [
        p["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        for p in policy["ingress"][0]["from"]
    ]
    assert allowed == ["router", "replay"]


def test_only_the_data_plane_reaches_models_and_only_allowed_clients_the_router() -> None:
    spec = sample("cpu-llamacpp.yaml")
    children = build(spec)
    for role in ("small", "large"):
        policy = children[("NetworkPolicy", f"demo-{role}")]["spec"]
        assert policy["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == (
            f"model-{role}"
        )
        (rule,) = policy["ingress"]
        assert [
            p["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for p in rule["from"]
        ] == [
            "router",
            "replay",
        ]
        assert rule["ports"] == [{"protocol": "TCP", "port": 8000}]
    assert ("NetworkPolicy", "demo-router") not in children  # by default: any pod may call
    clients = [{"namespaceSelector": {"matchLabels": {"team": "search"}}}]
    spec["router"] = {"allowedClients": clients}
    policy = build(spec)[("NetworkPolicy", "demo-router")]["spec"]
    (rule,) = policy["ingress"]
    assert rule["from"][0] == clients[0]
    assert rule["from"][1]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "iccache-operator"
    }  # the operator reads /quality
    assert [p["port"] for p in rule["ports"]] == [8080, 50051]


def test_redis_and_model_pods_are_hardened_and_carry_no_token() -> None:
    children = build(sample("cpu-llamacpp.yaml"))
    redis = children[("StatefulSet", "demo-redis")]["spec"]["template"]["spec"]
    assert redis["automountServiceAccountToken"] is False
    assert redis["containers"][0]["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
        "runAsNonRoot": True,
    }
    for role in ("small", "large"):
        pod = children[("Deployment", f"demo-{role}")]["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 65532
        home = {"name": "HOME", "value": "/tmp"}
        assert home in pod["containers"][0]["env"]
        assert {"name": "tmp", "mountPath": "/tmp"} in pod["containers"][0]["volumeMounts"]
    root = sample("cpu-llamacpp.yaml")
    root["models"]["large"]["runAsUser"] = 0  # an image that cannot run otherwise
    pod = build(root)[("Deployment", "demo-large")]["spec"]["template"]["spec"]
    assert "securityContext" not in pod


READY = Replicas(1, 1)


def _replay_pod(finished: str | None, message: str, code: int = 0) -> dict[str, Any]:
    state = {"terminated": {"finishedAt": finished, "message": message, "exitCode": code}}
    return {"status": {"containerStatuses": [{"state": state if finished else {"running": {}}}]}}


def test_status_shows_the_newest_replay_summary() -> None:
    line = "completed: replayed 4, improved 1, expanded 2, evicted 0; 12 requests, 900 tokens"
    pods = [
        _replay_pod("2026-11-20T03:00:40Z", json.dumps({"status": "completed", "line": "old"})),
        _replay_pod("2026-11-21T03:00:40Z", json.dumps({"status": "completed", "line": line})),
        _replay_pod(None, ""),  # still running
    ]
    assert last_replay(pods) == {"lastRunTime": "2026-11-21T03:00:40Z", "lastResult": line}
    crashed = [_replay_pod("2026-11-22T03:00:01Z", "Traceback ... redis: refused", code=1)]
    assert last_replay(crashed) == {
        "lastRunTime": "2026-11-22T03:00:01Z",
        "lastResult": "exit code 1: Traceback ... redis: refused",
    }
    assert last_replay([]) is None


def test_ready_only_when_every_part_is() -> None:
    ok = Observed(small=READY, large=READY, redis=READY, router=Replicas(2, 2), cronjob=True)
    conditions = {c["type"]: c for c in compute_conditions(ok)}
    assert conditions["Ready"]["status"] == "True"
    waiting = Observed(small=READY, large=Replicas(2, 1), redis=READY, router=READY, cronjob=True)
    conditions = {c["type"]: c for c in compute_conditions(waiting)}
    assert conditions["ModelsReady"]["status"] == "False"
    assert "large model 1/2 ready" in conditions["ModelsReady"]["message"]
    assert conditions["Ready"]["status"] == "False"
    assert conditions["Ready"]["reason"] == "Waiting"


def test_unusable_references_make_ready_false_with_a_reason() -> None:
    problem = "spec.models.large.apiKeySecretRef: Secret 'x' not found"
    broken = Observed(
        small=READY, large=None, redis=None, router=READY, cronjob=True, problems=[problem]
    )
    ready = compute_conditions(broken)[-1]
    assert (ready["status"], ready["reason"]) == ("False", "InvalidReference")
    assert "apiKeySecretRef" in ready["message"]


def test_transition_time_kept_while_status_unchanged() -> None:
    first = merge_conditions(
        [], [{"type": "Ready", "status": "False", "reason": "W", "message": ""}], 1, "t1"
    )
    same = merge_conditions(
        first, [{"type": "Ready", "status": "False", "reason": "W", "message": ""}], 2, "t2"
    )
    flipped = merge_conditions(
        same, [{"type": "Ready", "status": "True", "reason": "A", "message": ""}], 2, "t3"
    )
    assert same[0]["lastTransitionTime"] == "t1"
    assert same[0]["observedGeneration"] == 2
    assert flipped[0]["lastTransitionTime"] == "t3"


@pytest.mark.parametrize("name", ["cpu-llamacpp.yaml", "gpu-vllm.yaml"])
def test_builders_are_deterministic(name: str) -> None:
    first, second = build(sample(name)), build(sample(name))
    first.pop(("Secret", "demo-redis-auth"), None)  # the generated password differs
    second.pop(("Secret", "demo-redis-auth"), None)
    assert first == second


def test_api_keys_mode_mounts_the_keys_secret_and_renders_tenancy() -> None:
    spec = sample("cpu-llamacpp.yaml")
    spec["tenancy"] = {
        "mode": "api-keys",
        "apiKeysSecretRef": {"name": "router-keys", "key": "keys.yaml"},
        "adminSecretRef": {"name": "router-admin", "key": "key"},
        "limits": {"requestsPerMinute": 600},
        "overrides": {"acme": {"capacity": 1000, "ttlSeconds": 86400}},
    }
    children = build(spec)
    pod = children[("Deployment", "demo-router")]["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "api-keys"]
    assert volume["secret"] == {
        "secretName": "router-keys",
        "items": [{"key": "keys.yaml", "path": "keys.yaml"}],
    }
    container = pod["containers"][0]
    assert {"name": "api-keys", "mountPath": "/etc/iccache-keys", "readOnly": True} in container[
        "volumeMounts"
    ]
    admin = [e for e in container["env"] if e["name"] == "ICCACHE_ADMIN_KEY"]
    assert admin[0]["valueFrom"]["secretKeyRef"] == {"name": "router-admin", "key": "key"}
    rendered = yaml.safe_load(children[("ConfigMap", "demo-router-config")]["data"]["router.yaml"])
    tenancy = RouterSettings.model_validate(rendered).tenancy
    assert tenancy.mode == "api-keys"
    assert tenancy.keys_file == "/etc/iccache-keys/keys.yaml"
    assert tenancy.admin_key_env == "ICCACHE_ADMIN_KEY"
    assert tenancy.limits.requests_per_minute == 600
    assert tenancy.overrides["acme"].capacity == 1000
    refs = referenced_secrets(InContextCacheSpec.model_validate(spec))
    assert ("spec.tenancy.apiKeysSecretRef", "router-keys", "keys.yaml") in refs


def test_pruning_deletes_only_unplanned_children_the_resource_controls() -> None:
    owner = Owner("demo", "ns", "uid-1")
    spec = InContextCacheSpec.model_validate(
        {
            "models": {
                "small": {"engine": "llamacpp", "model": "s"},
                "large": {"engine": "external", "model": "l", "endpoint": "http://l:8000/v1"},
            },
            "cache": {"mode": "external", "external": {"url": "redis://r:6379"}},
        }
    )
    wanted = plan(owner, spec, "sidecar:1")

    def found(name: str, uid: str | None = "uid-1", controller: bool = True) -> dict[str, object]:
        refs = [{"uid": uid, "controller": controller}] if uid else []
        return {"metadata": {"name": name, "ownerReferences": refs}}

    deployments = [
        found("demo-small"),  # planned: kept
        found("demo-router"),
        found("demo-large"),  # the model became external: deleted
        found("demo-large-old", uid="uid-2"),  # another resource's: never
        found("demo-odd", uid=None),  # nobody's: never
        found("demo-weak", controller=False),  # owned but not controlled: never
    ]
    assert unplanned(wanted, "Deployment", deployments, "uid-1") == ["demo-large"]
    assert unplanned(wanted, "StatefulSet", [found("demo-redis")], "uid-1") == ["demo-redis"]
    assert retained_claims(owner, spec) == ["data-demo-redis-0"]


def _redis_container(spec: dict[str, Any], version: str = "") -> tuple[dict[str, Any], Any]:
    parsed = InContextCacheSpec.model_validate(spec)
    wanted = plan(OWNER, parsed, IMAGE, "", version)
    children = {(c["kind"], c["metadata"]["name"]): c for c in wanted.apply}
    template = children[("StatefulSet", "demo-redis")]["spec"]["template"]
    return template, template["spec"]["containers"][0]


def test_redis_keeps_under_its_memory_limit() -> None:
    spec = sample("cpu-llamacpp.yaml")
    _, unlimited = _redis_container(spec)
    assert "--maxmemory" not in unlimited["args"]
    spec["cache"]["managed"]["resources"] = {"limits": {"memory": "1Gi"}}
    _, limited = _redis_container(spec)
    args = limited["args"]
    assert args[args.index("--maxmemory") + 1] == str(int(2**30 * 0.8))
    assert args[args.index("--maxmemory-policy") + 1] == "volatile-lru"
    spec["cache"]["managed"]["resources"] = {"limits": {"memory": "lots"}}
    with pytest.raises(SpecError, match="not a memory quantity"):
        _redis_container(spec)


def test_a_rotated_managed_redis_password_restarts_redis() -> None:
    spec = sample("cpu-llamacpp.yaml")
    first, _ = _redis_container(spec, "101")
    second, _ = _redis_container(spec, "202")
    assert first["metadata"]["annotations"] != second["metadata"]["annotations"]
    assert "202" in json.dumps(second["metadata"]["annotations"])
