"""Examples go into the prompt as earlier turns of the conversation."""

from __future__ import annotations

import re
from collections.abc import Sequence

from iccache_sidecar.core.domain import Candidate, ChatMessage, estimate_tokens


def with_examples(
    examples: Sequence[Candidate], messages: Sequence[ChatMessage]
) -> list[ChatMessage]:
    """System messages first, then the examples (best last, nearest the question), then
    the conversation itself."""
    system = [m for m in messages if m.role == "system"]
    rest = [m for m in messages if m.role != "system"]
    shots: list[ChatMessage] = []
    for example in reversed(examples):
        shots += [ChatMessage("user", example.prompt), ChatMessage("assistant", example.response)]
    return system + shots + rest


def prompt_tokens(messages: Sequence[ChatMessage]) -> int:
    """Estimated prompt size, counting a few tokens of chat-template overhead per turn."""
    return sum(estimate_tokens(m.content) + 4 for m in messages)


_SPACES = re.compile(r"\s+")


def normalise_prompt(text: str) -> str:
    """What counts as 'the same prompt' (exact-match hits, duplicate paraphrases)."""
    return _SPACES.sub(" ", text.strip().lower())


def conversation_text(messages: Sequence[ChatMessage]) -> str:
    """What identifies a conversation for exact-match hits: every turn, in order. A lone
    user turn is just its text, so two conversations share a hit only if they agree on
    the system prompt and every earlier turn too."""
    if len(messages) == 1 and messages[0].role == "user":
        return messages[0].content
    return "\n".join(f"[{m.role}] {m.content}" for m in messages)


def retrieval_text(messages: Sequence[ChatMessage], context_turns: int) -> str:
    """The last user turn, after up to ``context_turns`` earlier user turns: a follow-up
    ("and in French?") is embedded, and stored, with what it follows."""
    users = [m.content for m in messages if m.role == "user" and m.content.strip()]
    return "\n".join(users[-(context_turns + 1) :]) if users else ""
