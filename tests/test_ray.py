"""The Ray Data path on a local Ray instance, with the model-free pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("ray")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

from service.inputs import jsonl_lines  # noqa: E402
from service.ray_batch import SummarizerActor, run_ray  # noqa: E402
from service.settings import Settings  # noqa: E402
from tests.test_inputs import ROWS, check, outcome  # noqa: E402

TEXT = "The union demanded higher wages from the city. The mayor said she opposes the plan."


def lines_of(rows: list[object], name: str = "in.jsonl") -> dict[str, list[object]]:
    """A batch as ``SummarizerActor`` receives it from ``run_ray``."""
    data = b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in rows)
    pairs = list(jsonl_lines(data, name=name))
    return {"where": [w for w, _ in pairs], "raw": [raw for _, raw in pairs]}


def test_actor_answers_each_row_with_its_id(tmp_path: Path) -> None:
    actor = SummarizerActor(settings=Settings(cache_dir=tmp_path))
    out = actor(lines_of([{"id": "a", "text": TEXT}, {"text": ""}, b"{not json"]))
    assert out["id"] == ["a", "in.jsonl:2", "in.jsonl:3"]
    assert out["ok"] == [True, False, False]
    assert json.loads(out["json"][0])["summary"]
    assert json.loads(out["json"][1])["error"]["kind"] == "InputError"
    assert "invalid JSON" in json.loads(out["json"][2])["error"]["message"]


def test_actor_checks_rows_as_every_other_door_does(tmp_path: Path) -> None:
    """Unknown fields refused, options honoured, integer ids, a lone surrogate refused alone."""
    actor = SummarizerActor(settings=Settings(cache_dir=tmp_path), cache_path=str(tmp_path / "c"))
    out = actor(lines_of(ROWS))
    check(
        {row_id: outcome(json.loads(j)) for row_id, j in zip(out["id"], out["json"], strict=True)}
    )


def test_run_ray_writes_every_id_exactly_once(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    ids = [f"a{i:02d}" for i in range(12)]
    rows: list[object] = [{"id": i, "text": f"Report {i}. {TEXT}"} for i in ids]
    rows[5] = {"id": "a05", "text": ""}  # one failure, still answered once
    rows[7] = b'{"id": "a07", "text": "caf\xe9"}'  # not UTF-8: Ray's own reader would stop
    rows[9] = b'{"id": "a09", "text": "bad \\ud800 text"}'
    source.write_bytes(b"".join(
        (r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in rows
    ))  # fmt: skip
    output = tmp_path / "out.jsonl"

    counts = run_ray(source, output, settings=Settings(cache_dir=tmp_path), batch_size=4)

    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["id"] for r in lines] == ids
    assert counts == {"rows": 12, "done": 9, "failed": 3}
    assert [i for i, r in enumerate(lines) if "error" in r] == [5, 7, 9]
