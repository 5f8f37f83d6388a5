from __future__ import annotations

import json
import subprocess
import sys

import pytest

from service.cli import main
from tests.conftest import ROOT, SEEDS


@pytest.fixture(autouse=True)
def isolated_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("STANDPOINT_CACHE_DIR", str(tmp_path / "cache-dir"))


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
    assert "512" in err  # the reason is still there


# Every article comes out on its own; every failure is one readable line ---------------------
def test_good_files_come_out_around_a_binary_file_and_a_broken_jsonl(tmp_path):
    good, other = tmp_path / "good.txt", tmp_path / "other.txt"
    good.write_text(SEEDS[0].read_text())
    other.write_text(SEEDS[1].read_text())
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"id": "r1", "text": "The union demanded a raise."}\nnot json\n')

    done = standpoint("summarize", str(good), str(binary), str(rows), str(other))

    assert done.returncode == 2
    assert [json.loads(line)["id"] for line in done.stdout.splitlines()] == ["good", "r1", "other"]
    assert done.stderr.splitlines() == [
        f"standpoint: {binary}: looks like a binary file, not text or HTML",
        "standpoint: rows.jsonl:2: invalid JSON (Expecting value at column 1)",
    ]


def run_main(capsys, *argv: str) -> tuple[int, list[str]]:
    """The CLI in this process: its exit code and its stderr lines (no traceback escapes)."""
    code = main(list(argv))
    return code, capsys.readouterr().err.splitlines()


def test_input_nested_too_deep_is_one_line(tmp_path, capsys):
    deep = tmp_path / "deep.jsonl"
    deep.write_text('{"id": "d", "text": ' + "[" * 100_000 + "]" * 100_000 + "}\n")

    code, err = run_main(capsys, "summarize", str(deep))
    assert (code, err) == (2, ["standpoint: deep.jsonl:1: invalid JSON (nested too deeply)"])

    out = tmp_path / "out.jsonl"
    code, err = run_main(capsys, "batch", str(deep), "-o", str(out), "--no-progress", "--no-cache")
    assert code == 2 and len(err) == 1 and "1 failed" in err[0]
    assert json.loads(out.read_text())["error"]["message"].endswith("nested too deeply)")


def test_an_article_over_the_token_limit_is_one_line_and_an_error_row(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("STANDPOINT_MAX_ARTICLE_TOKENS", "1000")
    long = tmp_path / "long.txt"
    long.write_text("The union demanded a raise of five percent from the city council. " * 100)

    code, err = run_main(capsys, "summarize", str(long), str(SEEDS[0]))
    assert code == 2 and len(err) == 1, err
    assert "long: the article has about" in err[0] and "limit is 1000" in err[0]
    assert "STANDPOINT_MAX_ARTICLE_TOKENS" in err[0]

    out = tmp_path / "out.jsonl"
    code, err = run_main(capsys, "batch", str(long), "-o", str(out), "--no-progress", "--no-cache")
    assert code == 2 and "1 failed" in err[-1]
    row = json.loads(out.read_text())
    assert row["id"] == "long" and "limit is 1000" in row["error"]["message"]


def _read_only_mount(folder):
    """A read-only tmpfs at ``folder``, or None where mounting is not allowed (not root)."""
    import os

    if os.geteuid() != 0:
        return None
    folder.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True
    )
    return folder if done.returncode == 0 else None


def _immutable(path):
    """``path`` made immutable with chattr, or None where that is not possible."""
    import shutil

    if shutil.which("chattr") is None:
        return None
    path.write_text("")
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
    return path if done.returncode == 0 else None


@pytest.mark.parametrize(
    ("target", "needle"),
    [
        ("folder", "is a folder"),
        ("/proc/no-such-folder/out.jsonl", "No such file or directory"),
        ("/proc/out.jsonl", "No such file or directory"),
        ("immutable", "Operation not permitted"),
        ("read-only", "Read-only file system"),
    ],
)
def test_an_output_that_cannot_be_written_is_one_line(tmp_path, capsys, target, needle):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"id": "a", "text": SEEDS[0].read_text()}) + "\n")
    if target == "folder":
        target = str(tmp_path)
    elif target == "immutable":
        made = _immutable(tmp_path / "locked.jsonl")
        if made is None:
            pytest.skip("chattr +i is not available here")
        target = str(made)
    elif target == "read-only":
        mounted = _read_only_mount(tmp_path / "ro")
        if mounted is None:
            pytest.skip("cannot mount a read-only file system here")
        target = str(mounted / "out.jsonl")
    try:
        code, err = run_main(capsys, "batch", str(source), "-o", target, "--no-progress")
    finally:
        if target.endswith("locked.jsonl"):
            subprocess.run(["chattr", "-i", target], check=True)
        if target.endswith("ro/out.jsonl"):
            subprocess.run(["umount", str(tmp_path / "ro")], check=True)
    assert code == 1
    assert len(err) == 1 and err[0].startswith(f"standpoint: {target}: ") and needle in err[0]


def test_a_cache_that_cannot_be_opened_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("STANDPOINT_CACHE_PATH", "/proc/no-such-folder/results.sqlite")
    out = tmp_path / "out.jsonl"
    code, err = run_main(capsys, "batch", str(SEEDS[0]), "-o", str(out), "--no-progress")
    assert code == 1 and len(err) == 1
    assert err[0].startswith("standpoint: /proc/no-such-folder/results.sqlite: ")


def test_a_model_folder_without_a_model_is_one_line(tmp_path, capsys, monkeypatch):
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    (empty / "notes.txt").write_text("nothing here")
    monkeypatch.setenv("STANDPOINT_MODEL", str(empty))
    code, err = run_main(capsys, "summarize", "--load-model", str(SEEDS[0]))
    assert code == 3
    assert len(err) == 1 and f"STANDPOINT_MODEL={str(empty)!r}" in err[0]
    assert "no config.json" in err[0]
