"""``standpoint`` command line: summarize, serve, batch, eval.

Errors become one readable line on stderr and a non-zero exit code, here and nowhere else.
Subcommands that live in other modules register through ``add_arguments(parser)`` and run
through ``run(args) -> int``, imported only when chosen.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import itertools
import logging
import sys
import time

from service.errors import StandpointError, printable, shorten
from service.inputs import read_paths
from service.schemas import Result
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
        "eval.training",
        "Train the learned stages' heads from annotations; print a cross-validated report.",
    ),
}


def _summarize(args: argparse.Namespace) -> int:
    from service.pipeline import build_pipeline

    settings = settings_from_args(args)
    pipeline = build_pipeline(settings, load_model=args.load_model)
    rows = read_paths(args.paths, max_chars=settings.max_chars)
    failed = count = 0
    started = time.perf_counter()
    while chunk := list(itertools.islice(rows, settings.batch_size)):
        results = iter(pipeline.run([r.article for r in chunk if r.article is not None]))
        for row in chunk:
            count += 1
            result = next(results) if row.article is not None else None
            if isinstance(result, Result):
                print(result.model_dump_json(indent=2 if args.pretty else None), flush=True)
                continue
            failed += 1
            where, message = (row.id, result.message) if result else (row.where, row.error)
            print(f"standpoint: {shorten(where, 240)}: {message}", file=sys.stderr, flush=True)
    logger.info("%d articles in %.1f s", count, time.perf_counter() - started)
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
        if not _installed(module):
            _not_installed(sub, name, module, help_text)
            continue
        plugged = sub.add_parser(name, help=help_text)
        plugged.set_defaults(module=module)
        importlib.import_module(module).add_arguments(plugged)
    return top


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # nor is its package (a wheel has no eval/)
        return False


def _not_installed(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, module: str, help_text: str
) -> None:
    """``standpoint NAME ...`` without NAME's module: one line and exit 1, whatever follows."""
    package = module.partition(".")[0]
    message = (
        f"{name} runs from a source checkout (python -m service {name} there): "
        f"the {package} package is not installed"
    )

    def fail(args: argparse.Namespace) -> int:
        raise StandpointError(message)

    # no character starts an option here, so every argument (--help too) is a plain one
    absent = sub.add_parser(name, help=help_text, add_help=False, prefix_chars="\0")
    absent.add_argument("arguments", nargs="*", help=argparse.SUPPRESS)
    absent.set_defaults(handler=fail)


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
        print(f"standpoint: {printable(exc.message)}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # a file that cannot be read or written: one line, not a traceback
        logger.debug("file error", exc_info=True)
        where = f"{printable(str(exc.filename))}: " if exc.filename else ""
        print(f"standpoint: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("standpoint: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
