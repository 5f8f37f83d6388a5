"""The OpenAI-compatible seam (Ollama, vLLM, llama.cpp server) against a local fake server."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request

from service.model import load_model
from service.pipeline import Pipeline
from service.settings import Settings

QUOTE = "Putin ruled out signing any ceasefire deal before Ukrainian troops withdraw."


def fake_openai(seen: list[dict[str, Any]]) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def complete(request: Request) -> dict[str, Any]:
        body = await request.json()
        seen.append(body)
        if "response_format" in body:
            content = json.dumps(
                {
                    "demands": [
                        {
                            "actor": "Putin",
                            "demand": "Ukrainian troops withdraw",
                            "target": "Ukraine",
                            "conditions": "before any ceasefire",
                            "quote": QUOTE,
                        },
                        {
                            "actor": "Putin",
                            "demand": "a referendum",
                            "target": None,
                            "conditions": None,
                            "quote": "Putin demanded a referendum in Kyiv.",
                        },
                    ],
                    "positions": [],
                }
            )
        else:
            content = f"{QUOTE} John Kerry agreed."
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": content},
                }
            ],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
        }

    return app


@pytest.fixture
def server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    runner = uvicorn.Server(
        uvicorn.Config(fake_openai(seen), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    for _ in range(100):
        try:
            httpx.get(f"http://127.0.0.1:{port}/docs")
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/v1", seen
    runner.should_exit = True
    thread.join(timeout=10)


def test_openai_compatible_server_plugs_in_by_settings(server, seed_articles):
    url, seen = server
    settings = Settings(
        model="openai:tiny-server-model",
        openai_base_url=url,
        summarizer="model-write",
        extractor="model-json",
    )
    pipeline = Pipeline(settings=settings, model=load_model(settings))
    result = pipeline.invoke(seed_articles[1])

    assert result.summary == QUOTE  # the Kerry sentence was not in the article
    assert [d.quote for d in result.demands] == [QUOTE]  # the made-up quote was dropped
    assert result.text[result.demands[0].start : result.demands[0].end] == QUOTE
    assert "dropped 1 model items not grounded in the article" in result.warnings
    assert result.meta.model == "tiny-server-model"
    assert result.meta.generated_tokens == 40 and result.meta.prompt_tokens == 200

    extraction = next(body for body in seen if "response_format" in body)
    schema = extraction["response_format"]["json_schema"]["schema"]
    assert set(schema["properties"]) == {"demands", "positions"}
    assert all(body["model"] == "tiny-server-model" and body["temperature"] == 0 for body in seen)
    assert "<article>" in extraction["messages"][-1]["content"]


def test_openai_model_needs_a_base_url():
    with pytest.raises(ValueError, match="OPENAI_BASE_URL"):
        Settings(model="openai:x")


def test_scoring_stages_refuse_a_remote_model(server):
    url, _ = server
    settings = Settings(model="openai:m", openai_base_url=url, extractor="model-score")
    with pytest.raises(Exception, match="local model"):
        Pipeline(settings=settings, model=load_model(settings))
