"""``standpoint`` command line: summarize, serve, batch, eval.

Errors become one readable line on stderr and a non-zero exit code, here and nowhere else.
Subcommands that live in other modules register through ``add_arguments(parser)`` and run
through ``run(args) -> int``, imported only when chosen.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from service.errors import InputError, StandpointError

logger = logging.getLogger(__name__)

# subcommand -> module with add_arguments(parser) and run(args)
PLUGGED = {
    "serve": ("service.api", "Run the HTTP API (and the page at /)."),
    "batch": (
        "service.batch",
        "Summarize a JSONL file, folder or glob into a JSONL file, resumably.",
    ),
    "eval": ("eval.runner", "Run the eval benchmark and write results and a report."),
}


def jsonl_rows(name: str, content: str) -> Iterator[dict[str, Any]]:
    """The JSON objects of a JSONL text; a bad line stops with its file and line number."""
    for number, line in enumerate(content.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{name}:{number}: invalid JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise InputError(f"{name}:{number}: each line must be a JSON object")
        yield row


def read_inputs(paths: list[str]) -> Iterator[dict[str, Any]]:
    """Articles from .txt, .html and .jsonl paths, as dicts for ``Article``."""
    for name in paths:
        path = Path(name)
        if not path.is_file():
            raise InputError(f"{name}: no such file")
        data = path.read_bytes()
        if b"\x00" in data[:8192]:
            raise InputError(f"{name}: looks like a binary file, not text or HTML")
        try:
            content = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
        if path.suffix == ".jsonl":
            for row in jsonl_rows(name, content):
                yield {k: row[k] for k in ("id", "text", "html") if k in row}
        elif path.suffix in {".html", ".htm"}:
            yield {"id": path.stem, "html": content}
        else:
            yield {"id": path.stem, "text": content}


def build_pipeline(args: argparse.Namespace) -> Any:
    """Settings from the environment and flags, the model loaded once, the pipeline."""
    from service.model import load_model
    from service.pipeline import Pipeline
    from service.settings import Settings

    overrides = {
        k: v
        for k, v in vars(args).items()
        if k in {"model", "summarizer", "extractor"} and v is not None
    }
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise StandpointError(exc.errors()[0]["msg"]) from exc
    needs_model = settings.summarizer.startswith("model") or settings.extractor.startswith("model")
    model = load_model(settings) if needs_model or args.load_model else None
    return Pipeline(settings=settings, model=model)


def _summarize(args: argparse.Namespace) -> int:
    articles = list(read_inputs(args.paths))
    pipeline = build_pipeline(args)
    failed = 0
    started = time.perf_counter()
    for article, result in zip(
        articles, pipeline.batch(articles, return_exceptions=True), strict=True
    ):
        if isinstance(result, StandpointError):
            failed += 1
            print(f"standpoint: {article.get('id')}: {result.message}", file=sys.stderr)
            continue
        print(result.model_dump_json(indent=2 if args.pretty else None))
    logger.info("%d articles in %.1f s", len(articles), time.perf_counter() - started)
    return 2 if failed else 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="standpoint", description=__doc__.splitlines()[0])
    top.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = top.add_subparsers(dest="command", required=True)
    summarize = sub.add_parser("summarize", help="Summarize articles; one JSON object per article.")
    summarize.add_argument("paths", nargs="+", help=".txt, .html or .jsonl ({id, text|html}) files")
    add_pipeline_arguments(summarize)
    summarize.add_argument("--pretty", action="store_true", help="indent the JSON")
    summarize.set_defaults(handler=_summarize)
    for name, (module, help_text) in PLUGGED.items():
        if importlib.util.find_spec(module) is None:
            continue
        plugged = sub.add_parser(name, help=help_text)
        plugged.set_defaults(module=module)
        importlib.import_module(module).add_arguments(plugged)
    return top


def add_pipeline_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="embedded, a model folder, a .gguf file, or openai:<name>")
    p.add_argument("--summarizer", choices=["lead", "centrality", "model-rank", "model-write"])
    p.add_argument("--extractor", choices=["rules", "model-score", "model-json"])
    p.add_argument(
        "--load-model",
        action="store_true",
        help="load the model even if the chosen stages do not need it (meta names it)",
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if hasattr(args, "module"):
            return int(importlib.import_module(args.module).run(args))
        return int(args.handler(args))
    except StandpointError as exc:
        print(f"standpoint: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("standpoint: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
