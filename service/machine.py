"""What this machine gives the model: torch's thread count and the precision, chosen once.

Imports only the standard library, so a door can consult it before torch is imported; the model
seam (``service.model``) applies it for every door (CLI, batch and its worker processes, the API
server, the Ray actor, eval and training all load the model through ``load_model``).

**Threads** (``thread_plan``): ``STANDPOINT_THREADS`` when set; else the user's own
``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` (torch sizes its pools from them: left alone); else
all the cores this process may use (``os.sched_getaffinity``) but one, and ``cores / N`` for
each of N worker processes. On 2 cores that is one thread: with two, torch's OpenMP team and
MKL's GEMM waited on each other at every operation and the 15-layer pass took 2-12x as long
(docs/speed.md). ``prepare_environment`` runs before torch is imported: unless the user chose a
wait policy, threads that wait at a barrier sleep instead of spinning on a core another thread
(the event loop, the other pool, another process) needs; it is what keeps an explicit
``STANDPOINT_THREADS=2`` on 2 cores within ~1.3x of one thread.

**Precision** (``resolve_dtype``): ``STANDPOINT_DTYPE=auto`` (the default) is bfloat16 where
the CPU does bfloat16 arithmetic natively (``avx512_bf16`` or ``amx_bf16`` in /proc/cpuinfo)
and the configured stages only read the model's features (the learned stages: one article per
forward pass, so its features do not depend on its batch mates); float32 elsewhere, and for
the stages that generate or score (in bfloat16 a greedy choice near a tie flips with the batch
mates). ``float32`` and ``bfloat16`` are explicit choices.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

# The user's own thread settings: torch reads them when it starts, and we leave them be.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
# A wait policy the user chose (GNU OpenMP reads these when torch loads it).
WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
NATIVE_BF16 = frozenset({"avx512_bf16", "amx_bf16"})
CPUINFO = Path("/proc/cpuinfo")


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, e.g. under taskset or a cgroup
    cpuset), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class ThreadPlan:
    """Torch's intra-op threads (``None``: leave torch's own choice) and why."""

    threads: int | None
    reason: str


def thread_plan(
    threads: int | None,
    *,
    processes: int = 1,
    cores: int | None = None,
    environ: MutableMapping[str, str] | None = None,
) -> ThreadPlan:
    """How many threads torch gets in each of ``processes`` processes sharing ``cores``."""
    environ = os.environ if environ is None else environ
    cores = usable_cores() if cores is None else cores
    if threads:
        return ThreadPlan(threads, "STANDPOINT_THREADS")
    chosen = [name for name in THREAD_VARIABLES if environ.get(name)]
    if chosen:
        return ThreadPlan(None, ", ".join(f"{n}={environ[n]}" for n in chosen))
    if processes > 1:
        return ThreadPlan(max(1, cores // processes), f"{cores} cores / {processes} processes")
    return ThreadPlan(max(1, cores - 1), f"{cores} cores, one left for the rest")


def prepare_environment(environ: MutableMapping[str, str] | None = None) -> None:
    """Before torch is imported: OpenMP threads sleep at barriers (``OMP_WAIT_POLICY=PASSIVE``)
    unless the user set a wait policy. Without effect once torch is loaded."""
    environ = os.environ if environ is None else environ
    if not any(environ.get(name) for name in WAIT_VARIABLES):
        environ["OMP_WAIT_POLICY"] = "PASSIVE"


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The CPU's feature flags (the first ``flags`` line of /proc/cpuinfo); empty if unknown."""
    return _cpu_flags(cpuinfo)


@lru_cache
def _cpu_flags(cpuinfo: Path) -> frozenset[str]:
    try:
        with cpuinfo.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                name, _, value = line.partition(":")
                if name.strip() == "flags":
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def native_bf16(flags: frozenset[str] | None = None) -> bool:
    """Whether the CPU multiplies bfloat16 natively (AVX-512 BF16 or AMX)."""
    return bool((cpu_flags() if flags is None else flags) & NATIVE_BF16)


def resolve_dtype(setting: str, *, features_only: bool, flags: frozenset[str] | None = None) -> str:
    """The precision to load the model in: ``setting`` unless it is ``auto``."""
    if setting != "auto":
        return setting
    return "bfloat16" if features_only and native_bf16(flags) else "float32"
