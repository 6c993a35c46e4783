"""Each llama.cpp server answers the official OpenAI client with real text."""

from __future__ import annotations

from openai import OpenAI

from iccache_dev.local.llamacpp import LocalLLM


def _client(server: LocalLLM) -> OpenAI:
    return OpenAI(base_url=server.base_url, api_key="not-needed", timeout=120, max_retries=0)


def test_smollm2_answers_a_chat_request(llm_servers: dict[str, LocalLLM]) -> None:
    server = llm_servers["smollm2"]
    reply = _client(server).chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Name one colour of the rainbow."}],
        max_tokens=16,
        temperature=0,
    )
    text = reply.choices[0].message.content or ""
    assert text.strip(), reply
    assert reply.usage is not None
    assert reply.usage.completion_tokens > 0


def test_gemma3_answers_a_completion_request(llm_servers: dict[str, LocalLLM]) -> None:
    server = llm_servers["gemma3"]
    reply = _client(server).completions.create(
        model="gemma3", prompt="The capital of France is", max_tokens=8, temperature=0
    )
    assert reply.choices[0].text.strip(), reply


def test_models_endpoint_lists_the_alias(llm_servers: dict[str, LocalLLM]) -> None:
    for alias, server in llm_servers.items():
        ids = [m.id for m in _client(server).models.list()]
        assert alias in ids
