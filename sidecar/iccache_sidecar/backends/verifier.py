"""The large model's token log-probabilities of a small answer, in one prefill.

Two wire forms of OpenAI's legacy ``/completions`` carry a prompt's log-probabilities,
and servers differ in which they speak, so :meth:`LogprobVerifier.detect` asks once at
start and says what it found:

- ``prompt_logprobs`` (vLLM, and the development stack's llama.cpp server): each prompt
  position lists the prompt token with its log-probability and rank, and the top token;
- ``echo`` with ``logprobs`` (llama-cpp-python's server): the prompt is echoed with
  per-token log-probabilities. Some builds report, at each position, the distribution
  of the *next* token; detection measures which alignment the server uses. This form
  computes its lists in Python and costs far more than the prefill itself.

llama.cpp's own ``llama-server`` supports neither (it refuses ``echo``): the verifier is
then off, and the router says so.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import aiohttp

from iccache_contract.settings import BackendSettings, VerifierSettings
from iccache_sidecar.core.domain import ChatMessage
from iccache_sidecar.core.verification import TokenView, Verified, render_prompt, score_draft

log = logging.getLogger(__name__)

Protocol = Literal["prompt_logprobs", "echo", "none"]
# An answer any language model predicts: detection reads its tokens. It follows the chat
# template, as real prompts do: whether a server strips a leading BOS token (and so
# which alignment its echo has) can depend on the prompt's first token.
PROBE_QUESTION = "Count from 1 to 16."
PROBE_ANSWER = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16"


def answer_views(
    tokens: Sequence[str], views: Sequence[TokenView | None], answer: str
) -> list[TokenView]:
    """The views of the answer's tokens: the last positions, whose text covers the
    answer (the answer ends the prompt, so it is found from the end)."""
    covered, start = 0, len(tokens)
    target = len(answer.rstrip())
    while start > 0 and covered < target:
        start -= 1
        covered += len(tokens[start])
    return [v for v in views[start:] if v is not None]


def parse_prompt_logprobs(data: Mapping[str, Any], answer: str) -> list[TokenView]:
    """vLLM's form: ``choices[0].prompt_logprobs`` is a list (None first) of
    ``{token_id: {logprob, rank, decoded_token}}`` holding the prompt token first, then
    the top ones."""
    entries = data["choices"][0]["prompt_logprobs"]
    tokens: list[str] = []
    views: list[TokenView | None] = []
    for entry in entries:
        if not entry:
            tokens.append("")
            views.append(None)
            continue
        options = list(entry.values())
        own = options[0]
        top = min(options, key=lambda o: o.get("rank") or 1 << 30)
        tokens.append(str(own.get("decoded_token") or ""))
        views.append(
            TokenView(
                logprob=float(own["logprob"]),
                top_logprob=float(top["logprob"]),
                is_top=own.get("rank") == 1,
            )
        )
    return answer_views(tokens, views, answer)


def parse_echo(data: Mapping[str, Any], answer: str, shift: int) -> list[TokenView]:
    """The echo form: ``choices[0].logprobs`` with ``tokens``, ``token_logprobs`` and
    ``top_logprobs`` (a dict per position), the prompt's tokens followed by the generated
    ones (``usage.completion_tokens`` of them), which are left out. With ``shift`` 1
    the server put, at position i, the distribution
    of token i + 1: token i's view is then read from position i - 1, where its
    log-probability is known only when it is among the top entries (else the least of
    them bounds it from above)."""
    lp = data["choices"][0]["logprobs"]
    tokens: list[str] = list(lp["tokens"])
    tops: list[Mapping[str, float] | None] = list(lp["top_logprobs"])
    own: list[float | None] = list(lp["token_logprobs"])
    generated = int((data.get("usage") or {}).get("completion_tokens") or 0)
    if generated:
        tokens, tops, own = tokens[:-generated], tops[:-generated], own[:-generated]
    views: list[TokenView | None] = []
    for i, token in enumerate(tokens):
        if shift == 0:
            dist, value = tops[i], own[i]
        else:
            dist = tops[i - 1] if i >= 1 else None
            value = None if dist is None else dist.get(token)
            if dist is not None and value is None:
                value = min(dist.values())
        if not dist or value is None:
            views.append(None)
            continue
        best = max(dist, key=lambda k: dist[k])
        views.append(TokenView(float(value), float(dist[best]), best == token))
    return answer_views(tokens, views, answer)


class LogprobVerifier:
    def __init__(self, settings: VerifierSettings, large: BackendSettings) -> None:
        self.settings = settings
        self.large = large
        self.protocol: Protocol = "none"
        # The server answered (200 or a refusal): it is up, and asking it again would
        # only repeat a real completion, so the router does not retry detection.
        self.answered = False
        self.shift = 0
        self._url = large.base_url.rstrip("/") + "/completions"
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout_seconds)
            )
        return self._session

    async def _post(self, body: Mapping[str, Any]) -> dict[str, Any] | None:
        try:
            async with self._client().post(self._url, json=body) as r:
                text = await r.text()
                self.answered = self.answered or r.status < 500  # 5xx: still starting
                if r.status != 200:
                    log.debug("verifier call refused (%d): %s", r.status, text[:200])
                    return None
                parsed: dict[str, Any] = json.loads(text)
                return parsed
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.info("verifier call failed: %r", exc)
            return None

    def _body(self, prompt: str, form: Protocol) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.large.model,
            "prompt": prompt,
            "max_tokens": 1,
            "temperature": 0.0,
        }
        if form == "prompt_logprobs":
            body["prompt_logprobs"] = 1
        else:
            body.update(echo=True, logprobs=self.settings.echo_top_logprobs)
        return body

    async def detect(self, quiet: bool = False) -> Protocol:
        """Which form the large model's server speaks (logged; "none" turns the verifier
        off). Repeated calls ask again (a server that was down at start); ``quiet`` logs
        a "none" at debug level only."""
        probe = render_prompt([ChatMessage("user", PROBE_QUESTION)], self.settings.prompt_format)
        probe += PROBE_ANSWER
        data = await self._post(self._body(probe, "prompt_logprobs"))
        if data and data.get("choices") and data["choices"][0].get("prompt_logprobs"):
            self.protocol = "prompt_logprobs"
        else:
            data = await self._post(self._body(probe, "echo"))
            logprobs = (data or {}).get("choices", [{}])[0].get("logprobs") if data else None
            if logprobs and logprobs.get("top_logprobs"):
                self.protocol, self.shift = "echo", _echo_shift(data or {})
            else:
                self.protocol = "none"
        if self.protocol == "none":
            (log.debug if quiet else log.warning)(
                "verifier: the large model's server (%s) returns no prompt log-probabilities "
                "(neither prompt_logprobs nor echo): small answers are not verified",
                self.large.base_url,
            )
        else:
            log.info(
                "verifier: the large model's server speaks %s%s",
                self.protocol,
                " (next-token alignment)" if self.shift else "",
            )
        return self.protocol

    async def token_views(
        self, messages: Sequence[ChatMessage], answer: str
    ) -> tuple[list[TokenView], float] | None:
        """The large model at each token of ``answer`` following ``messages``, and the
        call's wall time; None when it could not be had."""
        if self.protocol == "none":
            return None
        prompt = render_prompt(messages, self.settings.prompt_format) + answer
        started = time.monotonic()
        data = await self._post(self._body(prompt, self.protocol))
        if data is None:
            return None
        try:
            if self.protocol == "prompt_logprobs":
                views = parse_prompt_logprobs(data, answer)
            else:
                views = parse_echo(data, answer, self.shift)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            log.info("verifier answer unreadable: %r", exc)
            return None
        return views, time.monotonic() - started

    async def verify(self, messages: Sequence[ChatMessage], answer: str) -> Verified | None:
        """The draft's score under the large model; None when it could not be had."""
        done = await self.token_views(messages, answer)
        if done is None:
            return None
        views, seconds = done
        return Verified(score_draft(views), seconds)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _echo_shift(data: Mapping[str, Any]) -> int:
    """0 when each position's log-probability is its own token's, 1 when it is the next
    token's distribution: on a counting prompt the right reading is near certain."""
    lp = data["choices"][0]["logprobs"]
    tokens, tops = lp["tokens"], lp["top_logprobs"]
    own_hits = shifted_hits = 0
    for i in range(len(tokens) // 2, len(tokens)):
        dist = tops[i]
        if not dist:
            continue
        best = max(dist, key=lambda k: dist[k])
        own_hits += best == tokens[i]
        shifted_hits += i + 1 < len(tokens) and best == tokens[i + 1]
    return 1 if shifted_hits > own_hits else 0
