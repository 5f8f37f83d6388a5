"""Load test: many concurrent clients, each sending distinct articles, against a real server.

    python -m eval.bench_load [--stages default model] [--clients 50] [--seconds 60]

For each stage set a server is started as a subprocess (``python -m service.cli serve`` on a
free loopback port, with a fresh result cache, so every article is computed). ``--clients``
clients then each send one article at a time for ``--seconds``: every article distinct (the
dataset's and the seeds' texts, each under a numbered dateline), a 429 or 503 answered by
waiting its Retry-After and sending the same article again while time remains. After the last
client has its last answer, the benchmark checks that nothing is left: the queue is empty,
no run is in progress, and the server process uses no CPU. Then an abandon phase: a run's
worth of clients send articles and hang up while they are computed; the server should stop
that run between steps (reported: seconds from the hang-up until nothing runs).

Reported per stage set: answers by status, latency p50/p95 (200s, and all answers), requests
that got no answer at all (lost: connection errors or client timeouts), 200s whose id was not
the article's, articles answered per minute, the server's refusals by reason, measured seconds
per article, mean run size, and the machine's load average before and after (the machine may
be shared; say what else ran). Bounded: each phase lasts ``--seconds`` plus at most the
server's deadline (``--timeout``, default the setting's) for the answers still owed.

Stage sets: ``default`` (the settings' defaults: the learned stages), ``model`` (the slowest:
model-write + model-json on the embedded model) and ``rules`` (centrality + rules, no model).
``--code DIR`` runs the server from another checkout (say, an older commit) to compare before
and after.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from service.inputs import read_jsonl
from service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "eval-data"
STAGES = {
    "default": {},
    "model": {"summarizer": "model-write", "extractor": "model-json"},
    "rules": {"summarizer": "centrality", "extractor": "rules"},
}


def base_articles(files: list[Path]) -> list[str]:
    """Article texts from the seeds and the given JSONL files (rows with a ``text``)."""
    texts = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "seeds").glob("*.txt"))]
    for path in files:
        if path.exists():
            for row in read_jsonl(path):
                if isinstance(text := row.get("text"), str):
                    texts.append(text)
    return list(dict.fromkeys(t for t in texts if t.strip()))


def distinct_articles(texts: list[str]) -> Iterator[dict[str, str]]:
    """Endless distinct articles: the texts in turn, each under a numbered dateline."""
    for n in itertools.count():
        yield {"id": f"load-{n}", "text": f"(Dispatch {n}) {texts[n % len(texts)]}"}


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


@dataclass
class Tally:
    statuses: Counter[int] = field(default_factory=Counter)
    latency_ok: list[float] = field(default_factory=list)
    latency_all: list[float] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    wrong_id: int = 0
    gave_up: int = 0  # clients whose last answer was 429/503 with a Retry-After past the end

    def summary(self, seconds: float) -> dict[str, Any]:
        return {
            "answers": sum(self.statuses.values()),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "lost": len(self.lost),
            "lost_examples": self.lost[:5],
            "wrong_id": self.wrong_id,
            "gave_up_after_refusal": self.gave_up,
            "ok_p50_s": percentile(self.latency_ok, 0.5),
            "ok_p95_s": percentile(self.latency_ok, 0.95),
            "all_p50_s": percentile(self.latency_all, 0.5),
            "all_p95_s": percentile(self.latency_all, 0.95),
            "ok_per_min": round(self.statuses[200] / seconds * 60, 1),
        }


class Server:
    """``python -m service.cli serve`` in a subprocess on a free loopback port."""

    def __init__(
        self, stages: dict[str, str], *, cache: Path, timeout: float | None, code: Path
    ) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "service.cli", "serve", "--port", str(self.port)]
        for name, value in stages.items():
            command += [f"--{name}", value]
        env = {**os.environ, "STANDPOINT_CACHE_PATH": str(cache), "STANDPOINT_HOST": "127.0.0.1"}
        if timeout is not None:
            env["STANDPOINT_REQUEST_TIMEOUT_S"] = str(timeout)
        self.log = cache.parent / "server.log"
        with self.log.open("wb") as log:  # the server keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                command, cwd=code, env=env, stdout=log, stderr=subprocess.STDOUT
            )

    def wait_ready(self, seconds: float = 600) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited:\n{self.output()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError("the server did not become ready")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def metrics(url: str) -> dict[str, float]:
    """The server's Prometheus samples (name{labels} -> value), without comments."""
    text = httpx.get(url + "/metrics", timeout=10).text
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def busy(sample: dict[str, float]) -> bool:
    """Requests queued or a run in progress (older servers report only the queue)."""
    return bool(sample.get("standpoint_queue_depth") or sample.get("standpoint_running_articles"))


async def _client(
    url: str, articles: Iterator[dict[str, str]], end: float, timeout: float, tally: Tally
) -> None:
    async with httpx.AsyncClient(timeout=timeout) as http:
        while time.monotonic() < end:
            article = next(articles)
            while True:
                started = time.monotonic()
                try:
                    response = await http.post(url + "/v1/summaries", json=article)
                except httpx.HTTPError as exc:
                    tally.lost.append(f"{article['id']}: {type(exc).__name__}")
                    break
                seconds = time.monotonic() - started
                tally.statuses[response.status_code] += 1
                tally.latency_all.append(seconds)
                if response.status_code == 200:
                    tally.latency_ok.append(seconds)
                    tally.wrong_id += response.json().get("id") != article["id"]
                if response.status_code not in (429, 503):
                    break
                wait = float(response.headers.get("retry-after", "1"))
                if time.monotonic() + wait >= end:  # told to come back after the test: done
                    tally.gave_up += 1
                    return
                await asyncio.sleep(wait)


async def _load(
    url: str, articles: Iterator[dict[str, str]], *, clients: int, seconds: float, timeout: float
) -> Tally:
    tally = Tally()
    end = time.monotonic() + seconds
    await asyncio.gather(*(_client(url, articles, end, timeout, tally) for _ in range(clients)))
    return tally


async def _abandon(url: str, articles: Iterator[dict[str, str]], clients: int) -> dict[str, Any]:
    """Clients send articles and hang up once a run is computing them."""
    async with httpx.AsyncClient(timeout=600) as http:
        posts = [
            asyncio.create_task(http.post(url + "/v1/summaries", json=next(articles)))
            for _ in range(clients)
        ]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(p.done() for p in posts):
            sample = await asyncio.to_thread(metrics, url)
            if "standpoint_running_articles" not in sample:  # an older server: give it 10 s
                await asyncio.sleep(10)
                break
            if sample["standpoint_running_articles"]:
                break
            await asyncio.sleep(0.1)
        if all(p.done() for p in posts):
            return {"note": "every answer came before a hang-up could be made"}
        for p in posts:
            p.cancel()
        await asyncio.gather(*posts, return_exceptions=True)
    hung_up = time.monotonic()
    return {"stopped_after_hang_up_s": await _until_idle(url, since=hung_up)}


async def _until_idle(url: str, *, since: float, limit: float = 600) -> float | None:
    while time.monotonic() - since < limit:
        if not busy(await asyncio.to_thread(metrics, url)):
            return round(time.monotonic() - since, 2)
        await asyncio.sleep(0.1)
    return None


def run_stage_set(name: str, args: argparse.Namespace, texts: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "results.sqlite"
        server = Server(STAGES[name], cache=cache, timeout=args.timeout, code=args.code)
        try:
            started = time.monotonic()
            server.wait_ready()
            report: dict[str, Any] = {
                "stages": STAGES[name] or "defaults",
                "ready_s": round(time.monotonic() - started, 1),
            }
            deadline = args.timeout or Settings().request_timeout_s
            report["request_timeout_s"] = deadline
            report["load_before"] = [round(x, 2) for x in os.getloadavg()]
            articles = distinct_articles(texts)
            tally = asyncio.run(
                _load(
                    server.url,
                    articles,
                    clients=args.clients,
                    seconds=args.seconds,
                    timeout=deadline + 60,
                )
            )
            last_client = time.monotonic()
            report["wall_s"] = round(last_client - started - report["ready_s"], 1)
            report.update(tally.summary(args.seconds))
            report["idle_after_last_client_s"] = asyncio.run(
                _until_idle(server.url, since=last_client)
            )
            cpu = server.cpu_seconds()
            time.sleep(2)
            report["server_cpu_s_in_2s_after_idle"] = round(server.cpu_seconds() - cpu, 2)
            sample = metrics(server.url)
            report["server"] = {
                "refused": {
                    k.split('"')[1]: v
                    for k, v in sample.items()
                    if k.startswith("standpoint_refused_requests_total")
                },
                "dropped": {
                    k.split('"')[1]: v
                    for k, v in sample.items()
                    if k.startswith("standpoint_dropped_requests_total")
                },
                "cancelled_runs": sample.get("standpoint_cancelled_runs_total"),
                "token_ms": round(1000 * sample.get("standpoint_token_seconds", 0.0), 4),
                "runs": sample.get("standpoint_batch_articles_count"),
                "mean_run_articles": round(
                    sample.get("standpoint_batch_articles_sum", 0.0)
                    / max(1.0, sample.get("standpoint_batch_articles_count", 0.0)),
                    2,
                ),
            }
            report["abandon"] = asyncio.run(_abandon(server.url, articles, args.abandon_clients))
            cpu = server.cpu_seconds()
            time.sleep(2)
            report["abandon"]["server_cpu_s_in_2s_after"] = round(server.cpu_seconds() - cpu, 2)
            report["load_after"] = [round(x, 2) for x in os.getloadavg()]
            return report
        finally:
            server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", nargs="+", choices=sorted(STAGES), default=["default"])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument(
        "--timeout", type=float, help="the server's request_timeout_s (default: the setting)"
    )
    parser.add_argument("--abandon-clients", type=int, default=8)
    parser.add_argument(
        "--data",
        type=Path,
        nargs="*",
        default=[DATA / "negotiations.jsonl", DATA / "news_pool.jsonl"],
        help="JSONL files whose texts (with the seeds) make the articles",
    )
    parser.add_argument(
        "--code",
        type=Path,
        default=ROOT,
        help="run the server from this checkout (e.g. an older commit, to compare)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_load.json")
    args = parser.parse_args(argv)

    texts = base_articles(args.data)
    report: dict[str, Any] = {
        "clients": args.clients,
        "seconds": args.seconds,
        "base_texts": len(texts),
        "cpus": os.cpu_count(),
        "code": str(args.code),
    }
    for name in args.stages:
        print(f"load test: {name} stages, {args.clients} clients, {args.seconds:g} s", flush=True)
        report[name] = run_stage_set(name, args, texts)
        print(json.dumps(report[name], indent=2), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
