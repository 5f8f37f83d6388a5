from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT, SEEDS


def standpoint(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )


def test_summarize_prints_one_json_object_per_article(tmp_path):
    rows = tmp_path / "articles.jsonl"
    rows.write_text(
        json.dumps({"id": "a", "text": SEEDS[0].read_text()})
        + "\n\n"
        + json.dumps(
            {"id": "b", "html": "<p>" + SEEDS[1].read_text().replace("\n", "</p><p>") + "</p>"}
        )
        + "\n"
    )
    done = standpoint("summarize", str(SEEDS[0]), str(rows))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["id"] for r in lines] == [SEEDS[0].stem, "a", "b"]
    for r in lines:
        assert set(r) == {"id", "text", "summary", "demands", "positions", "warnings", "meta"}
        for item in r["demands"] + r["positions"]:
            assert r["text"][item["start"] : item["end"]] == item["quote"]
    assert lines[0]["demands"] == lines[1]["demands"]


def test_bad_input_gives_one_readable_line_and_a_non_zero_exit(tmp_path):
    binary = tmp_path / "photo.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9".encode("latin-1"))
    broken = tmp_path / "rows.jsonl"
    broken.write_text('{"id": "x", "text": "ok"}\n{"id": \n')
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    cases = {
        str(tmp_path / "missing.txt"): "no such file",
        str(binary): "binary",
        str(latin): "not UTF-8",
        str(broken): "rows.jsonl:2: invalid JSON",
        str(empty): "the article has no text",
    }
    for path, message in cases.items():
        done = standpoint("summarize", path)
        assert done.returncode == 2
        assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


def test_a_bad_article_does_not_stop_the_others(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    done = standpoint("summarize", str(empty), str(SEEDS[0]))
    assert done.returncode == 2
    assert json.loads(done.stdout)["id"] == SEEDS[0].stem
    assert "empty: the article has no text" in done.stderr


def test_bad_settings_are_refused_at_start(tmp_path):
    done = standpoint("summarize", "--model", str(tmp_path / "nope"), str(SEEDS[0]))
    assert done.returncode == 78
    assert "neither 'embedded'" in done.stderr and "Traceback" not in done.stderr


def test_a_long_id_is_shortened_in_the_error_line(tmp_path, capsys):
    from service.cli import main

    long_id = "x" * 100_000
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"id": long_id, "text": "The union demanded a raise."}) + "\n")
    assert main(["summarize", str(rows)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and len(err) < 200, err[:300]
    assert "xxxx…" in err and "(100000 characters)" in err
    assert "512" in err  # the reason is still there
