"""The wheel carries its prompts, seeds and page, and runs from outside the source tree; the
eval package (the benchmark and training) stays in the checkout."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from service.heads import DEFAULT_HEADS
from service.prompts import load_prompt
from service.settings import Settings
from tests.conftest import ROOT, SEEDS

# What a source copy leaves out: build outputs (a stale build/lib would put files deleted from
# the checkout into the wheel), environments and caches.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", "runs"
)

# Runs inside the installed copy: where it was imported from, what it reads, and the CLI once per
# argument list in one interpreter (torch and the model are imported once, not per run).
DRIVER = """
import contextlib, io, json, sys
import service
from service import resources
from service.resources import read_seeds
from service.cli import main

runs = []
for argv in json.loads(sys.argv[1]):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    runs.append({"code": code, "stdout": out.getvalue()})
print(json.dumps({
    "service": service.__file__,
    "prompts_dir": str(resources.prompts_dir()),
    "seeds_dir": str(resources.seeds_dir()),
    "seeds": [seed.id for seed in read_seeds()],
    "runs": runs,
}))
"""


def run(*command: str, **kwargs) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, **kwargs)
    assert done.returncode == 0, f"{command[:4]} failed:\n{done.stderr[-3000:]}"
    return done


def check_result(result: dict) -> None:
    assert result["summary"].strip()
    items = result["demands"] + result["positions"]
    for item in items:
        assert result["text"][item["start"] : item["end"]] == item["quote"]


@pytest.mark.model
def test_installed_wheel_runs_outside_the_checkout(tmp_path, tiny_model_dir):
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=NOT_SOURCE)
    pip = (sys.executable, "-m", "pip", "--disable-pip-version-check", "-q")
    offline = ("--no-deps", "--no-index")
    run(*pip, "wheel", *offline, "--no-build-isolation", "-w", str(tmp_path), str(src))
    [wheel] = tmp_path.glob("standpoint-*.whl")

    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    expected = {
        "service/static/index.html",
        "service/heads/default.npz",
        *(f"service/prompt_files/{p.parent.name}/{p.name}" for p in ROOT.glob("prompts/*/v*.yaml")),
        *(f"service/seed_files/{p.name}" for p in SEEDS),
    }
    assert expected <= names, sorted(expected - names)
    assert not [n for n in names if n.startswith("eval/")]

    site = tmp_path / "site"
    run(*pip, "install", *offline, "--target", str(site), str(wheel))

    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(SEEDS[0], work / "seed.txt")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STANDPOINT_")}
    env.update(
        PYTHONPATH=str(site),
        HF_HUB_OFFLINE="1",
        STANDPOINT_CACHE_DIR=str(tmp_path / "cache"),
        STANDPOINT_DTYPE="float32",
        STANDPOINT_MAX_NEW_TOKENS="16",
    )

    # a) the default (learned) stages, through the console script the wheel installs: the
    # embedded model converted by `make model`, the heads inside the wheel, a fresh result cache
    default = {**env, "STANDPOINT_CACHE_DIR": str(Settings().cache_dir)}
    default["STANDPOINT_CACHE_PATH"] = str(tmp_path / "results.sqlite")
    done = run(str(site / "bin" / "standpoint"), "summarize", "seed.txt", cwd=work, env=default)
    result = json.loads(done.stdout)
    check_result(result)
    assert result["demands"] + result["positions"]
    assert result["meta"]["prompts"] == {}
    assert result["meta"]["model"] == "SmolLM2-135M-Instruct"
    assert result["meta"]["heads"] == hashlib.sha256(DEFAULT_HEADS.read_bytes()).hexdigest()

    # b) a model stage per prompt, on a tiny random model
    model = ("summarize", "seed.txt", "--model", str(tiny_model_dir))
    argvs = [
        [*model, "--summarizer", "model-write", "--extractor", "rules"],
        [*model, "--summarizer", "centrality", "--extractor", "model-json"],
    ]
    done = run(sys.executable, "-c", DRIVER, json.dumps(argvs), cwd=work, env=env)
    report = json.loads(done.stdout)

    installed = site / "service"
    assert Path(report["service"]).parent == installed
    assert Path(report["prompts_dir"]) == installed / "prompt_files"
    assert Path(report["seeds_dir"]) == installed / "seed_files"
    assert report["seeds"] == [p.stem for p in SEEDS]

    for prompt_id, outcome in zip(("summarize", "extract"), report["runs"], strict=True):
        assert outcome["code"] == 0
        result = json.loads(outcome["stdout"])
        check_result(result)
        assert result["meta"]["model"] == tiny_model_dir.name
        assert result["meta"]["prompts"] == {prompt_id: load_prompt(prompt_id).ref}

    # c) the checkout's tools are not in the wheel: one line and a non-zero exit, not a traceback.
    # -S skips the .pth files of this environment's site-packages (an editable install of the
    # checkout would map eval/ back in); PYTHONPATH still gives it the installed dependencies.
    libraries = dict.fromkeys(sysconfig.get_path(kind) for kind in ("purelib", "platlib"))
    bare = {**env, "PYTHONPATH": os.pathsep.join([str(site), *libraries])}
    script = str(site / "bin" / "standpoint")
    for command in ("train", "eval"):
        done = subprocess.run(
            [sys.executable, "-S", script, command, "--help"],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=work,
            env=bare,
        )
        assert done.returncode != 0 and not done.stdout
        assert done.stderr.splitlines() == [
            f"standpoint: {command} runs from a source checkout (python -m service {command} "
            "there): the eval package is not installed"
        ]
