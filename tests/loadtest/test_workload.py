"""Prompts files and the request bodies made from them."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from gateway.client.loadtest.workload import Workload, WorkloadError, load_prompts


def test_prompts_file_forms_and_bodies(tmp_path: Path) -> None:
    path = tmp_path / "prompts.jsonl"
    path.write_text('"bare string"\n\n{"prompt": "p", "max_tokens": 3}\n'
                    '{"messages": [{"role": "user", "content": "m"}]}\n')
    records = load_prompts(path)
    assert len(records) == 3
    chat = Workload(records, "m1", 16, stream=True, chat=True, temperature=None)
    bodies = [orjson.loads(chat.next_body()) for _ in range(6)]
    assert {b["messages"][0]["content"] for b in bodies} == {"bare string", "p", "m"}
    assert all(b["stream"] and b["stream_options"] == {"include_usage": True} for b in bodies)
    assert all("temperature" not in b for b in bodies)  # temperature 0 would be served from the cache
    assert {b["max_tokens"] for b in bodies if b["messages"][0]["content"] == "p"} == {3}
    completions = Workload(records, "m1", 16, stream=False, chat=False, temperature=0.7)
    body = orjson.loads(completions.next_body())
    assert isinstance(body["prompt"], str) and body["temperature"] == 0.7 and "stream" not in body


@pytest.mark.parametrize("content, message", [
    ("{not json}\n", "prompts.jsonl:1: not valid JSON"),
    ('"ok"\n{"text": "x"}\n', "prompts.jsonl:2: expected a string or an object"),
    ("\n\n", "no prompts"),
])
def test_bad_prompts_files_name_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "prompts.jsonl"
    path.write_text(content)
    with pytest.raises(WorkloadError, match=message):
        load_prompts(path)
    assert load_prompts(None)  # the built-in prompts
