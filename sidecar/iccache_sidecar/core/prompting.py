"""Examples go into the prompt as earlier turns of the conversation."""

from __future__ import annotations

import hashlib
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


def example_scope(messages: Sequence[ChatMessage], user: str | None = None) -> str | None:
    """Which answers may serve this conversation as examples, beyond its tenant: the
    turns other than the user's (system prompts, earlier answers, tool results) shape an
    answer as much as the question does, so an answer is shared only with conversations
    that agree on them, and, when ``user`` is given, only with that user. None: a lone
    question, shared tenant-wide (the scope of every example stored before scopes)."""
    shaping = [f"[{m.role}] {m.content}" for m in messages if m.role != "user"]
    if not shaping and user is None:
        return None
    text = "\n".join(shaping) + ("" if user is None else f"\n[end user] {user}")
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def exact_scope_text(messages: Sequence[ChatMessage], user: str | None = None) -> str:
    """What names a conversation's exact hit: every turn, and the end user when answers
    are shared per user."""
    text = conversation_text(messages)
    return text if user is None else f"[end user] {user}\n{text}"
