"""The Responses API translated to chat completions and back (pure functions)."""

from __future__ import annotations

from typing import Any

import pytest

from iccache_sidecar.api.responses_convert import (
    answer_turn,
    chat_fields,
    chat_messages,
    output_items,
    request_turns,
    response_object,
)
from iccache_sidecar.api.responses_schema import ResponseCreateRequest
from iccache_sidecar.core.domain import Usage
from iccache_sidecar.core.errors import InvalidRequest
from iccache_sidecar.core.passthrough import shaping_fields


def req(**fields: Any) -> ResponseCreateRequest:
    return ResponseCreateRequest.model_validate({"model": "iccache", "input": "hi", **fields})


def test_a_string_input_is_one_user_turn_after_the_instructions() -> None:
    body = req(input="What is 2+2?", instructions="Answer briefly.")
    messages = chat_messages(body.instructions, request_turns(body))
    assert [(m.role, m.content) for m in messages] == [
        ("system", "Answer briefly."),
        ("user", "What is 2+2?"),
    ]


def test_items_become_chat_turns_with_parts_calls_and_outputs() -> None:
    body = req(
        input=[
            {"role": "developer", "content": "Be terse."},
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Look: "},
                    {"type": "input_image", "image_url": "data:image/png;base64,AA"},
                ],
            },
            {"role": "assistant", "content": [{"type": "output_text", "text": "Calling."}]},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "42"},
        ]
    )
    turns = request_turns(body)
    assert turns[0] == {"role": "system", "content": "Be terse."}
    assert turns[1]["content"] == [
        {"type": "text", "text": "Look: "},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA", "detail": "auto"}},
    ]
    assert turns[2] == {"role": "assistant", "content": "Calling."}
    # parallel calls are one assistant turn, as chat completions expect
    assert [c["id"] for c in turns[3]["tool_calls"]] == ["c1", "c2"]
    assert turns[4] == {"role": "tool", "tool_call_id": "c1", "content": "42"}
    assert len(turns) == 5
    messages = chat_messages(None, turns)
    assert messages[1].content == "Look: "  # the text that is embedded and cached


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"input": [{"type": "reasoning", "summary": []}]}, "reasoning"),
        ({"input": [{"type": "message", "content": "no role"}]}, "role"),
        ({"input": [{"role": "user", "content": [{"type": "input_file"}]}]}, "input_file"),
        ({"tools": [{"type": "web_search"}]}, "web_search"),
        ({"tool_choice": {"type": "file_search"}}, "tool_choice"),
        ({"background": True}, "background"),
        ({"include": ["message.output_text.logprobs"]}, "include"),
        ({"text": {"format": {"type": "json_schema"}}}, "json_schema"),
    ],
)
def test_what_has_no_chat_meaning_is_refused_by_name(fields: dict[str, Any], named: str) -> None:
    body = req(**fields)

    def translate() -> None:
        request_turns(body)
        chat_fields(body)

    with pytest.raises(InvalidRequest) as caught:
        translate()
    assert named in caught.value.message


def test_tools_and_formats_become_chat_fields_that_keep_the_answer_out_of_the_cache() -> None:
    body = req(
        tools=[{"type": "function", "name": "f", "parameters": {"type": "object"}}],
        tool_choice={"type": "function", "name": "f"},
        text={"format": {"type": "json_schema", "name": "A", "schema": {"type": "object"}}},
        metadata={"team": "a"},
    )
    fields = chat_fields(body)
    assert fields["tools"] == [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    ]
    assert fields["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert fields["response_format"]["json_schema"]["name"] == "A"
    assert shaping_fields(fields) == ["tools", "tool_choice", "response_format"]
    assert chat_fields(req(metadata={"team": "a"}, user="u")) == {
        "metadata": {"team": "a"},
        "user": "u",
    }


def test_a_chat_answer_becomes_output_items_and_a_turn() -> None:
    raw = {
        "choices": [
            {
                "message": {
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c9",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        }
                    ],
                }
            }
        ]
    }
    items = output_items("msg_1", "", raw)
    assert [i["type"] for i in items] == ["function_call"]
    assert items[0]["call_id"] == "c9"
    assert answer_turn("", raw)["tool_calls"][0]["id"] == "c9"
    text = output_items("msg_1", "Paris.", None)
    assert text[0]["content"][0] == {
        "type": "output_text",
        "text": "Paris.",
        "annotations": [],
        "logprobs": [],
    }


def test_an_answer_cut_by_the_token_limit_is_incomplete() -> None:
    body = req(max_output_tokens=4)
    out = response_object(
        body,
        response_id="resp_1",
        model="iccache",
        created=1,
        status="completed",
        output=[],
        usage=Usage(3, 4),
        finish_reason="length",
    )
    assert out["status"] == "incomplete"
    assert out["incomplete_details"] == {"reason": "max_output_tokens"}
    assert out["usage"]["total_tokens"] == 7
