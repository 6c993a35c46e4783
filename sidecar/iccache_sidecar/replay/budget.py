"""Per-tenant budgets of model requests and tokens that a run can never exceed.

Before each call the job reserves an upper bound of the prompt's tokens and caps the
answer's ``max_tokens`` to what is left; afterwards it charges what the server reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from iccache_sidecar.core.domain import ChatMessage, Usage

# Chat templates add special tokens and sometimes a default system prompt.
TEMPLATE_TOKENS_PER_MESSAGE = 32
TEMPLATE_TOKENS = 64


class BudgetExhausted(Exception):
    """No room left for another call within this tenant's budget."""


def prompt_token_bound(messages: Sequence[ChatMessage]) -> int:
    """A safe upper bound of prompt tokens: byte-level tokenizers never use more than one
    token per byte of text, plus the template's own tokens."""
    text = sum(len(m.content.encode()) for m in messages)
    return text + TEMPLATE_TOKENS_PER_MESSAGE * len(messages) + TEMPLATE_TOKENS


@dataclass
class Budget:
    requests: int
    tokens: int
    used_requests: int = 0
    used_tokens: int = 0

    @property
    def exhausted(self) -> bool:
        return self.used_requests >= self.requests or self.used_tokens >= self.tokens

    def reserve(self, messages: Sequence[ChatMessage], max_tokens: int, min_tokens: int = 1) -> int:
        """Claim one request; returns the ``max_tokens`` the call may use."""
        if self.used_requests >= self.requests:
            raise BudgetExhausted(f"request budget of {self.requests} spent")
        room = self.tokens - self.used_tokens - prompt_token_bound(messages)
        if room < min_tokens:
            raise BudgetExhausted(f"token budget of {self.tokens} nearly spent")
        self.used_requests += 1
        return min(max_tokens, room)

    def charge(self, usage: Usage | None, messages: Sequence[ChatMessage], max_tokens: int) -> int:
        """Count a finished call's tokens (the reserved bound when the server gave none)."""
        spent = (
            usage.prompt_tokens + usage.completion_tokens
            if usage and (usage.prompt_tokens or usage.completion_tokens)
            else prompt_token_bound(messages) + max_tokens
        )
        self.used_tokens += spent
        return spent
