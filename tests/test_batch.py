"""``standpoint batch`` and ``summarize_many`` with the model-free pipeline (lead + rules)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from service import summarize_many
from service.cache import ResultCache
from service.cli import parser
from service.errors import StandpointError
from service.pipeline import Pipeline
from service.schemas import Result
from service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
TEXT = "The union demanded higher wages from the city council. The mayor said she opposes the plan."


def article(i: int | str) -> dict[str, str]:
    return {"id": str(i), "text": f"Report number {i} from the hall. {TEXT}"}


def write_jsonl(path: Path, rows: list[object]) -> Path:
    with path.open("wb") as f:
        for row in rows:
            f.write(row if isinstance(row, bytes) else json.dumps(row).encode())
            f.write(b"\n")
    return path


def read_output(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def run_cli(*argv: str | Path) -> int:
    """``standpoint batch ARGV`` in this process; a StandpointError propagates (no exit code)."""
    args = parser().parse_args(["batch", *map(str, argv)])
    return int(args.handler(args))


def batch(*argv: str | Path, cache: Path | None = None) -> int:
    extra = ["--cache", str(cache)] if cache else ["--no-cache"]
    return run_cli(*argv, "--no-progress", *extra)


@pytest.fixture(autouse=True)
def isolated_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STANDPOINT_CACHE_DIR", str(tmp_path / "cache-dir"))


def test_resume_after_kill_writes_every_id_exactly_once(tmp_path: Path) -> None:
    ids = [f"n{i:05d}" for i in range(3000)]
    source = write_jsonl(tmp_path / "in.jsonl", [article(i) for i in ids])
    output = tmp_path / "out.jsonl"
    command = [sys.executable, "-m", "service", "batch", str(source), "-o", str(output),
               "--batch-size", "1", "--no-cache", "--no-progress"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if output.exists() and output.stat().st_size > 50_000:
            break
        time.sleep(0.01)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert first.returncode == -signal.SIGKILL
    data = output.read_bytes()
    assert data.endswith(b"\n"), "a kill left a partial line"
    written = len(data.splitlines())
    assert 0 < written < len(ids), "the run was not interrupted mid-way"

    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)

    assert second.returncode == 0, second.stderr
    assert f"{written} skipped" in second.stderr
    assert [r["id"] for r in read_output(output)] == ids


def test_a_partial_last_line_is_truncated_and_said(tmp_path: Path, caplog) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [article(1), article(2)])
    output = tmp_path / "out.jsonl"
    assert batch(source, "-o", output) == 0
    complete = output.read_text().splitlines()[0] + "\n"
    output.write_text(complete + '{"id": "2", "text": "The uni')

    assert batch(source, "-o", output) == 0

    assert "truncated a partial last line" in caplog.text
    assert [r["id"] for r in read_output(output)] == ["1", "2"]


def test_bad_rows_get_error_rows_and_the_run_goes_on(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("STANDPOINT_MAX_CHARS", "1000")
    source = write_jsonl(tmp_path / "in.jsonl", [
        article("ok"),
        b"{not json",
        b'{"id": "latin1", "text": "caf\xe9"}',
        {"id": "empty", "text": "   "},
        {"id": "long", "text": "word " * 400},
        {"id": "huge", "text": "x" * 60_000},
        ["not", "an", "object"],
        {"text": f"No id on this one. {TEXT}"},
        {"id": "neither"},
    ])  # fmt: skip
    output = tmp_path / "out.jsonl"

    assert batch(source, "-o", output) == 2

    rows = {r["id"]: r for r in read_output(output)}
    assert list(rows) == ["ok", "in.jsonl:2", "latin1", "empty", "long", "huge",
                          "in.jsonl:7", "in.jsonl:8", "neither"]  # fmt: skip
    assert Result.model_validate(rows["ok"]).summary
    assert Result.model_validate(rows["in.jsonl:8"]).id == "in.jsonl:8"
    reasons = {k: r["error"]["message"] for k, r in rows.items() if "error" in r}
    assert "invalid JSON" in reasons["in.jsonl:2"]
    assert "not UTF-8" in reasons["latin1"]
    assert "no text" in reasons["empty"]
    assert "limit is 1000" in reasons["long"]
    assert "too long" in reasons["huge"]
    assert "JSON object" in reasons["in.jsonl:7"]
    assert "text" in reasons["neither"]
    assert {r["error"]["kind"] for r in rows.values() if "error" in r} == {"InputError"}
    assert "2 done" in capsys.readouterr().err


def test_error_rows_are_retried_unless_told_not_to(tmp_path: Path, monkeypatch) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [article(1), {"id": "2", "text": ""}])
    output = tmp_path / "out.jsonl"
    assert batch(source, "-o", output) == 2
    write_jsonl(source, [article(1), article(2)])  # the bad row is fixed

    assert batch(source, "-o", output, "--no-retry-errors") == 0
    assert "error" in read_output(output)[1]

    assert batch(source, "-o", output) == 0
    rows = read_output(output)
    assert [r["id"] for r in rows] == ["1", "2"]
    assert all("error" not in r for r in rows)


def test_duplicate_ids_are_reported_and_processed_once(tmp_path: Path, caplog, capsys) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [article(1), article(2), article(1)])
    output = tmp_path / "out.jsonl"

    assert batch(source, "-o", output) == 0

    assert [r["id"] for r in read_output(output)] == ["1", "2"]
    assert "duplicate id '1' (first at in.jsonl:1)" in caplog.text
    assert "1 duplicate ids" in capsys.readouterr().err


def test_folder_and_glob_inputs(tmp_path: Path) -> None:
    folder = tmp_path / "articles"
    folder.mkdir()
    (folder / "b.txt").write_text(f"Text article. {TEXT}")
    (folder / "a.html").write_text(
        f"<html><body><article><h1>Council</h1><p>{TEXT}</p><p>{TEXT}</p></article></body></html>"
    )
    (folder / "c.txt").write_bytes(b"caf\xe9 au lait")
    (folder / "notes.csv").write_text("ignored")

    assert batch(folder, "-o", tmp_path / "folder.jsonl") == 2
    rows = read_output(tmp_path / "folder.jsonl")
    assert [r["id"] for r in rows] == ["a", "b", "c"]
    assert "not UTF-8" in rows[2]["error"]["message"]

    assert batch(str(folder / "*.txt"), "-o", tmp_path / "glob.jsonl") == 2
    assert [r["id"] for r in read_output(tmp_path / "glob.jsonl")] == ["b", "c"]

    with pytest.raises(StandpointError, match="no file matches"):
        batch(str(folder / "*.nothing"), "-o", tmp_path / "none.jsonl")


def test_the_cache_is_shared_between_runs(tmp_path: Path, capsys) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [article(i) for i in range(5)])
    cache = tmp_path / "results.sqlite"
    assert batch(source, "-o", tmp_path / "first.jsonl", cache=cache) == 0
    assert "5 done (0 from cache)" in capsys.readouterr().err
    assert len(ResultCache(cache)) == 5

    assert batch(source, "-o", tmp_path / "second.jsonl", cache=cache) == 0

    assert "5 done (5 from cache)" in capsys.readouterr().err
    first, second = read_output(tmp_path / "first.jsonl"), read_output(tmp_path / "second.jsonl")
    assert [r["summary"] for r in first] == [r["summary"] for r in second]


def test_default_cache_is_the_shared_results_file(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [article(1)])
    assert run_cli(source, "-o", tmp_path / "out.jsonl", "--no-progress") == 0

    assert len(ResultCache(tmp_path / "cache-dir" / "results.sqlite")) == 1


def test_two_workers_keep_input_order(tmp_path: Path) -> None:
    ids = [str(i) for i in range(9)]
    source = write_jsonl(tmp_path / "in.jsonl", [article(i) for i in ids])
    output = tmp_path / "out.jsonl"

    assert batch(source, "-o", output, "--workers", "2", "--batch-size", "2") == 0

    assert [r["id"] for r in read_output(output)] == ids


def test_summarize_many_keeps_input_order(tmp_path: Path) -> None:
    pipeline = Pipeline(settings=Settings(cache_dir=tmp_path), model=None)
    articles = [article(1), {"id": "bad", "text": ""}, article(3), article(4), article(5)]
    calls = []
    run = pipeline.run

    def counting_run(items, **kwargs):
        calls.append(len(items))
        return run(items, **kwargs)

    pipeline.run = counting_run  # type: ignore[method-assign]
    results = summarize_many(articles, pipeline=pipeline, batch_size=2)

    assert calls == [2, 2, 1]
    assert [getattr(r, "id", None) or r.article_id for r in results] == ["1", "bad", "3", "4", "5"]
    assert isinstance(results[1], StandpointError) and results[1].exit_code == 2
    assert all(isinstance(r, Result) for i, r in enumerate(results) if i != 1)


def test_summarize_many_builds_a_pipeline_and_uses_the_cache(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path / "results.sqlite")
    settings = Settings(cache_dir=tmp_path)
    first = summarize_many([article(1), article(2)], settings=settings, cache=cache)
    again = summarize_many([article(2)], settings=settings, cache=cache)
    assert len(cache) == 2
    assert again[0] == first[1]


def test_module_is_light_to_import() -> None:
    code = "import service.batch, sys; print('torch' in sys.modules or 'ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)  # fmt: skip
    assert out.stdout.strip() == "False"


# The cache the API uses ---------------------------------------------------------------------
def test_the_cache_path_setting_is_the_cache_batch_uses(tmp_path: Path, monkeypatch, capsys):
    shared = tmp_path / "shared" / "results.sqlite"
    monkeypatch.setenv("STANDPOINT_CACHE_PATH", str(shared))
    source = write_jsonl(tmp_path / "in.jsonl", [article(1), article(2)])
    for name in ("first", "second"):
        out = tmp_path / f"{name}.jsonl"
        assert run_cli(source, "-o", out, "--no-progress") == 0

    assert len(ResultCache(shared)) == 2
    assert Settings().result_cache_path == shared  # what create_app(Settings()) opens
    assert "2 done (2 from cache)" in capsys.readouterr().err.splitlines()[-1]


# Duplicates, a damaged output file, an output that is an input -------------------------------
def test_a_duplicate_id_with_other_text_is_written_under_a_derived_id(tmp_path, caplog, capsys):
    other = {"id": "1", "text": f"A different report. {TEXT}"}
    source = write_jsonl(tmp_path / "in.jsonl", [article(1), article(2), other, article(1)])
    output = tmp_path / "out.jsonl"

    assert batch(source, "-o", output) == 0

    rows = read_output(output)
    assert [r["id"] for r in rows] == ["1", "2", "1@in.jsonl:3"]
    assert rows[2]["text"].startswith("A different report.")
    assert "in.jsonl:3: id '1' is already used by in.jsonl:1 for another article" in caplog.text
    assert "2 duplicate ids (1 renamed)" in capsys.readouterr().err

    assert batch(source, "-o", output) == 0  # a rerun finds every row done
    assert [r["id"] for r in read_output(output)] == ["1", "2", "1@in.jsonl:3"]
    assert "3 skipped" in capsys.readouterr().err


def test_a_derived_id_is_one_no_input_row_uses(tmp_path, caplog):
    """The second ``1`` must not be written under an id a later row of the input has."""
    rows = [article(1), {"id": "1", "text": f"A different report. {TEXT}"}, article("1@in.jsonl:2")]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    output = tmp_path / "out.jsonl"

    assert batch(source, "-o", output) == 0

    ids = [r["id"] for r in read_output(output)]
    assert len(set(ids)) == 3 and ids[0] == "1" and ids[2] == "1@in.jsonl:2"
    assert ids[1] not in {"1", "1@in.jsonl:2"}
    assert batch(source, "-o", output) == 0  # the same derived id on a rerun: nothing to do
    assert [r["id"] for r in read_output(output)] == ids


def test_a_damaged_line_inside_the_output_is_set_aside_and_input_order_kept(tmp_path, caplog):
    rows = [article(1), {"id": "2", "text": ""}, article(3), article(4)]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    output = tmp_path / "out.jsonl"
    assert batch(source, "-o", output) == 2
    lines = output.read_bytes().splitlines(keepends=True)
    output.write_bytes(lines[0] + lines[1] + b'{"id": "3", "summ\x00ary\n' + lines[3])
    write_jsonl(source, [article(1), article(2), article(3), article(4)])  # row 2 is fixed

    assert batch(source, "-o", output) == 0

    assert [r["id"] for r in read_output(output)] == ["1", "2", "3", "4"]
    assert all("error" not in r for r in read_output(output))
    assert (tmp_path / "out.jsonl.damaged").read_bytes() == b'{"id": "3", "summ\x00ary\n'
    assert "out.jsonl:3: not an output row; moved to" in caplog.text


def test_an_output_that_is_also_an_input_is_refused(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [article(1)])
    before = source.read_bytes()
    with pytest.raises(StandpointError, match="is also an input"):
        batch(source, "-o", source)
    assert source.read_bytes() == before

    folder = tmp_path / "articles"
    folder.mkdir()
    (folder / "a.txt").write_text(TEXT)
    with pytest.raises(StandpointError, match="is also an input"):
        batch(folder, "-o", folder / "results.jsonl")  # a rerun would read its own output


def _alive_in_group(group: int) -> list[str]:
    """Processes (not zombies) in a process group, as 'pid name'."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        state, _ppid, pgrp = text[text.rindex(")") + 2 :].split()[:3]
        if int(pgrp) == group and state != "Z":
            alive.append(f"{stat.parent.name} {name}")
    return alive


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_workers_stop_when_the_parent_is_killed(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [article(i) for i in range(3000)])
    output = tmp_path / "out.jsonl"
    command = [sys.executable, "-m", "service", "batch", str(source), "-o", str(output),
               "--batch-size", "1", "--workers", "2", "--no-cache", "--no-progress"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    parent = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (output.exists() and output.stat().st_size > 20_000):
            assert time.monotonic() < deadline and parent.poll() is None, "no output"
            time.sleep(0.05)
        assert len(_alive_in_group(parent.pid)) >= 3  # the parent and its two workers
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 20
        while _alive_in_group(parent.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _alive_in_group(parent.pid) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, signal.SIGKILL)
