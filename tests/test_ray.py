"""The Ray Data path on a local Ray instance, with the model-free pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("ray")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

from service.ray_batch import SummarizerActor, run_ray  # noqa: E402
from service.settings import Settings  # noqa: E402

TEXT = "The union demanded higher wages from the city. The mayor said she opposes the plan."


def test_actor_answers_each_row_with_its_id(tmp_path: Path) -> None:
    actor = SummarizerActor(settings=Settings(cache_dir=tmp_path))
    out = actor({"id": ["a", None], "text": [TEXT, ""], "html": [None, None]})
    assert out["id"][0] == "a" and out["id"][1].startswith("sha1:")
    assert out["ok"] == [True, False]
    assert json.loads(out["json"][0])["summary"]
    assert json.loads(out["json"][1])["error"]["kind"] == "InputError"


def test_run_ray_writes_every_id_exactly_once(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    ids = [f"a{i:02d}" for i in range(12)]
    rows = [{"id": i, "text": f"Report {i}. {TEXT}"} for i in ids]
    rows[5]["text"] = ""  # one failure, still answered once
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    output = tmp_path / "out.jsonl"

    counts = run_ray(source, output, settings=Settings(cache_dir=tmp_path), batch_size=4)

    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["id"] for r in lines] == ids
    assert counts == {"rows": 12, "done": 11, "failed": 1}
    assert "error" in lines[5]
