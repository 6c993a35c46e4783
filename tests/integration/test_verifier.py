"""The verifier on real llama.cpp servers: Qwen2.5-Coder-1.5B scores small answers from
its own token log-probabilities (one prefill), through both wire forms, and verify mode
on ``iccache serve`` replaces a wrong small answer with the large model's."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from iccache_contract.settings import BackendSettings, VerifierSettings
from iccache_dev.bench.standin import standin_router
from iccache_dev.local import assets
from iccache_dev.local.llamacpp import LocalLLM
from iccache_dev.local.process import ManagedProcess, free_port, http_ok
from iccache_dev.local.redis import LocalRedis
from iccache_sidecar.backends.verifier import LogprobVerifier
from iccache_sidecar.core.domain import ChatMessage
from iccache_sidecar.core.verification import passes

SYSTEM = "Answer with a short phrase only, no explanation."
CASES = [
    ("What is the capital of France?", "Paris", "Berlin"),
    ("Who wrote Romeo and Juliet?", "William Shakespeare", "Charles Dickens"),
    ("How many legs does a spider have?", "Eight", "Six"),
]
THRESHOLD = VerifierSettings().threshold  # the default pass rule


def messages(question: str) -> list[ChatMessage]:
    return [ChatMessage("system", SYSTEM), ChatMessage("user", question)]


async def test_right_answers_pass_and_wrong_ones_fail(qwen_server: LocalLLM) -> None:
    settings = VerifierSettings(enabled=True)
    verifier = LogprobVerifier(settings, BackendSettings(base_url=qwen_server.base_url, model="q"))
    try:
        assert await verifier.detect() == "prompt_logprobs"
        for question, right, wrong in CASES:
            good = await verifier.verify(messages(question), right)
            bad = await verifier.verify(messages(question), wrong)
            assert good is not None
            assert bad is not None
            assert good.score is not None
            assert bad.score is not None
            assert good.score.mean_logprob > bad.score.mean_logprob, question
            assert passes(good.score, settings.statistic, THRESHOLD), (question, good.score)
            assert not passes(bad.score, settings.statistic, THRESHOLD), (question, bad.score)
    finally:
        await verifier.close()


@pytest.fixture(scope="module")
def upstream_server(services_dir: Path) -> Iterator[str]:
    """llama-cpp-python's own server, unmodified: it speaks only the echo form."""
    port = free_port()
    argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(assets.SMOLLM2_135M.path())]
    argv += ["--port", str(port), "--host", "127.0.0.1", "--n_threads", "1", "--n_ctx", "1024"]
    base = f"http://127.0.0.1:{port}/v1"
    with ManagedProcess("llama-upstream", argv, services_dir / "upstream.log") as proc:
        proc.wait_ready(lambda: http_ok(base + "/models"), timeout=120)
        yield base


async def test_the_echo_form_is_detected_and_read(upstream_server: str) -> None:
    verifier = LogprobVerifier(
        VerifierSettings(enabled=True, timeout_seconds=120),
        BackendSettings(base_url=upstream_server, model="smollm2"),
    )
    try:
        assert await verifier.detect() == "echo"
        question = CASES[0][0]
        # SmolLM2-135M is no judge of capitals, but it knows words from noise.
        good = await verifier.verify(messages(question), "Paris")
        bad = await verifier.verify(messages(question), "qzx vlorp")
        assert good is not None
        assert bad is not None
        assert good.score is not None
        assert bad.score is not None
        assert good.score.tokens == 1  # the answer's own token, not the generated one
        assert good.score.mean_logprob > bad.score.mean_logprob + 3
    finally:
        await verifier.close()


def test_verify_mode_replaces_a_wrong_small_answer(
    redis_server: LocalRedis, qwen_server: LocalLLM, tmp_path: Path
) -> None:
    """The small model is a stand-in that always says "Berlin"; the large one is Qwen.
    Asked for the capital of France, the draft fails and Qwen answers; asked for the
    capital of Germany, the draft passes and is returned."""
    large = {"base_url": qwen_server.base_url, "model": qwen_server.alias}
    routing = {"policy": "always-small"}
    verifier = {"enabled": True, "gate": True}
    with standin_router(
        tmp_path, redis_server.url, prefix="verify", routing=routing, large=large, verifier=verifier
    ) as router:
        small = router.models["small"]
        small.kill()
        small.answer = "Berlin"
        small.start()

        def ask(question: str) -> dict[str, object]:
            body = {
                "model": "iccache",
                "messages": [
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": question},
                ],
                "max_tokens": 16,
                "temperature": 0,
            }
            r = httpx.post(router.url + "/v1/chat/completions", json=body, timeout=120)
            assert r.status_code == 200, r.text
            return dict(r.json())

        wrong = ask("What is the capital of France?")
        decision = wrong["iccache"]
        assert isinstance(decision, dict)
        assert decision["verified"] is False
        assert decision["route"] == "large"
        assert "Paris" in str(wrong["choices"])

        right = ask("What is the capital of Germany?")
        decision = right["iccache"]
        assert isinstance(decision, dict)
        assert decision["verified"] is True
        assert decision["route"] == "small"
        assert "Berlin" in str(right["choices"])

        text = httpx.get(router.url + "/metrics", timeout=10).text
        assert re.search(r'^iccache_verifications_total\{result="fail"\} 1\.0', text, re.M)
        assert re.search(r'^iccache_verifications_total\{result="pass"\} 1\.0', text, re.M)
