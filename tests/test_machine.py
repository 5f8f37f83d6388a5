"""service.machine: torch's threads and the precision, chosen from the machine and the door."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from service import machine
from service.machine import prepare_environment, resolve_dtype, thread_plan

ROOT = Path(__file__).resolve().parent.parent
AMX_FLAGS = frozenset({"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})
AVX2_FLAGS = frozenset({"avx2", "fma", "f16c"})


def test_every_door_leaves_one_core_and_workers_share_the_cores() -> None:
    assert thread_plan(None, cores=2, environ={}).threads == 1
    assert thread_plan(None, cores=8, environ={}).threads == 7
    assert thread_plan(None, cores=1, environ={}).threads == 1
    assert thread_plan(None, processes=2, cores=2, environ={}).threads == 1
    assert thread_plan(None, processes=4, cores=8, environ={}).threads == 2
    assert thread_plan(None, processes=4, cores=2, environ={}).threads == 1


def test_standpoint_threads_wins_and_the_users_omp_or_mkl_variables_are_left_alone() -> None:
    assert thread_plan(3, cores=2, environ={"OMP_NUM_THREADS": "1"}) == machine.ThreadPlan(
        3, "STANDPOINT_THREADS"
    )
    plan = thread_plan(None, processes=2, cores=8, environ={"MKL_NUM_THREADS": "1"})
    assert plan.threads is None and "MKL_NUM_THREADS=1" in plan.reason
    assert thread_plan(None, cores=8, environ={"OMP_NUM_THREADS": ""}).threads == 7


def test_the_cores_are_the_ones_this_process_may_use() -> None:
    assert machine.usable_cores() == len(os.sched_getaffinity(0))


def test_threads_wait_passively_unless_the_user_chose_a_wait_policy() -> None:
    environ: dict[str, str] = {}
    prepare_environment(environ)
    assert environ == {"OMP_WAIT_POLICY": "PASSIVE"}
    for chosen in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "10000"}):
        environ = dict(chosen)
        prepare_environment(environ)
        assert environ == chosen


def test_auto_precision_is_bfloat16_only_for_feature_readers_on_a_native_bf16_cpu() -> None:
    assert resolve_dtype("auto", features_only=True, flags=AMX_FLAGS) == "bfloat16"
    assert resolve_dtype("auto", features_only=True, flags=frozenset({"avx512_bf16"})) == (
        "bfloat16"
    )
    assert resolve_dtype("auto", features_only=True, flags=AVX2_FLAGS) == "float32"
    assert resolve_dtype("auto", features_only=False, flags=AMX_FLAGS) == "float32"
    for explicit in ("float32", "bfloat16"):
        assert resolve_dtype(explicit, features_only=True, flags=AVX2_FLAGS) == explicit
        assert resolve_dtype(explicit, features_only=False, flags=AMX_FLAGS) == explicit


def test_cpu_flags_come_from_proc_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu avx2 avx512_bf16 amx_bf16\n\n"
        "processor\t: 1\nflags\t\t: fpu\n"
    )
    assert machine.cpu_flags(cpuinfo) == {"fpu", "avx2", "avx512_bf16", "amx_bf16"}
    assert machine.cpu_flags(tmp_path / "missing") == frozenset()


def _torch_threads(code: str, env: dict[str, str]) -> dict[str, int]:
    """Run ``code`` (which loads a model) in a fresh process; torch's threads afterwards."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "STANDPOINT_THREADS")
    }
    command = [sys.executable, "-c", code + "\nimport torch, json, os\n"
               "print(json.dumps({'threads': torch.get_num_threads(), "
               "'wait': os.environ.get('OMP_WAIT_POLICY')}))"]  # fmt: skip
    out = subprocess.run(
        command, env={**clean, **env}, cwd=ROOT, capture_output=True, text=True, check=True
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_loading_a_model_sets_torchs_threads_by_the_plan(tiny_model_dir: Path) -> None:
    """Through the model seam, in a fresh process as a door runs it: the plan's threads, the
    user's OMP_NUM_THREADS kept, STANDPOINT_THREADS above both, and the wait policy set before
    torch loaded."""
    load = (
        "from service.model import load_model\nfrom service.settings import Settings\n"
        f"load_model(Settings(model={str(tiny_model_dir)!r}))"
    )
    cores = len(os.sched_getaffinity(0))
    assert _torch_threads(load, {}) == {"threads": max(1, cores - 1), "wait": "PASSIVE"}
    assert _torch_threads(load, {"OMP_NUM_THREADS": "2"})["threads"] == 2
    assert _torch_threads(load, {"OMP_NUM_THREADS": "2", "STANDPOINT_THREADS": "1"}) == {
        "threads": 1,
        "wait": "PASSIVE",
    }


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")
def test_the_cores_follow_the_affinity_mask() -> None:
    """Under ``taskset -c 0`` (or a cgroup cpuset) the process has one core, whatever the
    machine has."""
    first = str(sorted(os.sched_getaffinity(0))[0])
    code = "from service.machine import usable_cores, thread_plan; print(usable_cores())"
    out = subprocess.run(
        ["taskset", "-c", first, sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "1"
