"""``--reasoner URL`` takes the vLLM server's base URL with or without the OpenAI-style ``/v1``."""

from __future__ import annotations

import pytest

from strata.origin.reasoner.vllm import chat_completions_url


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "http://127.0.0.1:8000/", "http://127.0.0.1:8000/v1",
                                 "http://127.0.0.1:8000/v1/"])
def test_base_url_with_or_without_v1(url: str) -> None:
    assert chat_completions_url(url) == "http://127.0.0.1:8000/v1/chat/completions"


def test_a_path_prefix_is_kept() -> None:
    assert chat_completions_url("https://gw.example/llm/v1") == "https://gw.example/llm/v1/chat/completions"
