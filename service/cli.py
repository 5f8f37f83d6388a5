"""``standpoint`` command line: summarize, serve, batch, eval.

Errors become one readable line on stderr and a non-zero exit code, here and nowhere else.
Subcommands that live in other modules register through ``add_arguments(parser)`` and run
through ``run(args) -> int``, imported only when chosen.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
import time
from typing import Any

from service.errors import StandpointError, shorten
from service.inputs import read_inputs
from service.schemas import Article
from service.settings import add_pipeline_arguments, settings_from_args

logger = logging.getLogger(__name__)

# subcommand -> module with add_arguments(parser) and run(args)
PLUGGED = {
    "serve": ("service.api", "Run the HTTP API (and the page at /)."),
    "batch": (
        "service.batch",
        "Summarize a JSONL file, folder or glob into a JSONL file, resumably.",
    ),
    "eval": ("eval.runner", "Run the eval benchmark and write results and a report."),
    "brief": (
        "service.briefing",
        "Brief several reports of one event: merged items, what differs, combined summary.",
    ),
    "train": (
        "service.training",
        "Train the learned stages' heads from annotations; print a cross-validated report.",
    ),
}


def _summarize(args: argparse.Namespace) -> int:
    from service.pipeline import build_pipeline

    articles = list(read_inputs(args.paths))
    pipeline = build_pipeline(settings_from_args(args), load_model=args.load_model)
    failed = 0
    started = time.perf_counter()
    for article, result in zip(
        articles,
        pipeline.batch(list[Article | dict[str, Any]](articles), return_exceptions=True),
        strict=True,
    ):
        if isinstance(result, StandpointError):
            failed += 1
            print(f"standpoint: {shorten(article.get('id'))}: {result.message}", file=sys.stderr)
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
