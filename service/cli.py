"""``standpoint`` command line: summarize, serve, batch, brief, eval, train.

Every flag is defined here; each handler imports the module it runs when it runs, so
``standpoint summarize --help`` loads no web framework, no eval and no model. Errors become one
readable line on stderr and a non-zero exit code, here and nowhere else. ``eval`` and ``train``
live in the source checkout's ``eval`` package (with its data); they plug in through
``add_arguments(parser)`` and ``run(args) -> int`` and are imported only when chosen.
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.errors import StandpointError, printable, shorten

if TYPE_CHECKING:
    from service.schemas import Briefing
    from service.settings import Settings

logger = logging.getLogger(__name__)

# subcommand -> module of the source checkout with add_arguments(parser) and run(args)
CHECKOUT_TOOLS = {
    "eval": ("eval.runner", "Run the eval benchmark and write results and a report."),
    "train": (
        "eval.training",
        "Train the learned stages' heads from annotations; print a cross-validated report.",
    ),
}
LOOPBACK = {"127.0.0.1", "localhost", "::1"}

# Command-line flags that override settings, shared by every subcommand that runs the pipeline.
PIPELINE_FLAGS = ("model", "summarizer", "extractor")


def add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="embedded, a model folder, a .gguf file, or openai:<name>")
    parser.add_argument(
        "--summarizer", help="a registered summarizer (default learned; see docs/architecture.md)"
    )
    parser.add_argument(
        "--extractor", help="a registered extractor (default learned; see docs/architecture.md)"
    )
    parser.add_argument(
        "--load-model",
        action="store_true",
        help="load the model even if the chosen stages do not need it (meta names it)",
    )


def settings_from_args(args: argparse.Namespace, *extra: str, **overrides: Any) -> Settings:
    """Settings from the environment, overridden by the pipeline flags (and the ``extra``
    flags named) that were given, then by ``overrides``; bad values are one ``SettingsError``
    naming each variable or flag."""
    from service.settings import load_settings

    values = {
        name: getattr(args, name)
        for name in (*PIPELINE_FLAGS, *extra)
        if getattr(args, name, None) is not None
    }
    flags = set(values)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return load_settings(values, flags=flags)


# summarize ----------------------------------------------------------------------------------
def _summarize(args: argparse.Namespace) -> int:
    from service.cache import CachedPipeline
    from service.inputs import read_paths
    from service.schemas import Result

    settings = settings_from_args(args)
    runner = CachedPipeline.open(
        settings, load_model=args.load_model, cache_path=args.cache, cached=not args.no_cache
    )
    rows = read_paths(args.paths, max_chars=settings.max_chars)
    failed = count = 0
    started = time.perf_counter()
    while chunk := list(itertools.islice(rows, settings.batch_size)):
        results = iter(runner.run([r.article for r in chunk if r.article is not None]))
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


# serve --------------------------------------------------------------------------------------
def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.api import create_app

    settings = settings_from_args(args, "host", "port")
    if settings.host not in LOOPBACK and settings.api_key is None:
        logger.warning(
            "listening on %s without STANDPOINT_API_KEY: anyone can call it", settings.host
        )
    app = create_app(settings, load_model=args.load_model)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")
    return 0


# batch --------------------------------------------------------------------------------------
def _batch(args: argparse.Namespace) -> int:
    from service.batch import run_batch

    settings = settings_from_args(args, "batch_size")
    return run_batch(
        spec=args.input,
        output=args.output,
        settings=settings,
        workers=args.workers,
        cache_path=None if args.no_cache else (args.cache or settings.result_cache_path),
        retry_errors=args.retry_errors,
        progress=not args.no_progress,
        load_model=args.load_model,
    )


# brief --------------------------------------------------------------------------------------
def _brief(args: argparse.Namespace) -> int:
    from service.briefing import MERGE_THRESHOLD, MIN_ARTICLES, brief
    from service.cache import CachedPipeline
    from service.errors import InputError
    from service.inputs import read_briefing_articles

    settings = settings_from_args(args)
    articles, unreadable = read_briefing_articles(args.paths, max_chars=settings.max_chars)
    if len(articles) + len(unreadable) < MIN_ARTICLES:
        raise InputError(f"a briefing needs at least {MIN_ARTICLES} articles")
    threshold = MERGE_THRESHOLD if args.threshold is None else args.threshold
    if not 0.0 < threshold <= 1.0:
        raise InputError("--threshold must be in (0, 1]")
    runner = CachedPipeline.open(settings, load_model=args.load_model)
    briefing = brief(articles, pipeline=runner, threshold=threshold)
    briefing.failed = unreadable + briefing.failed
    for failure in briefing.failed:
        print(f"standpoint: {failure.id}: {failure.message}", file=sys.stderr)
    document = briefing.model_dump_json(indent=2)
    if args.output:
        args.output.write_text(document + "\n", encoding="utf-8")
    print(document if args.json else render_briefing(briefing))
    return 2 if briefing.failed else 0


def render_briefing(briefing: Briefing) -> str:
    """The briefing as text for people."""
    names = {a.id: f"{a.id} ({a.outlet})" if a.outlet else a.id for a in briefing.articles}
    lines = [
        f"Briefing of {len(briefing.articles)} articles: {', '.join(names.values()) or 'none'}"
        + (f"; {len(briefing.failed)} failed" if briefing.failed else ""),
    ]
    lines += [f"  failed: {f.id}: {f.message}" for f in briefing.failed]
    lines += ["", "Summary:"]
    lines += [f"  - {s.quote} [{s.article} {s.start}:{s.end}]" for s in briefing.summary]
    meta = briefing.meta
    lines += [
        "",
        f"Items ({len(briefing.items)}; merged by actor and claim similarity >= "
        f"{meta.threshold:g}):",
    ]
    for item in briefing.items:
        flags = []
        if item.single_source:
            flags.append(f"SINGLE SOURCE: only in {item.carried_by[0]}")
        elif item.missing_from:
            flags.append(f"not in {', '.join(item.missing_from)}")
        if item.conflict:
            stances = ", ".join(f"{s.stance} in {s.article}" for s in item.sources if s.stance)
            flags.append(f"CONFLICT: {stances}")
        if item.conditions_differ:
            flags.append("conditions worded differently")
        lines.append(f"{item.id}. {item.actor} — {item.kind}: {item.claim}")
        lines.append(
            f"    carried by {len(item.carried_by)} of {len(briefing.articles)}"
            + (f"; {'; '.join(flags)}" if flags else "")
        )
        for s in item.sources:
            extra = f" [stance: {s.stance}]" if s.stance else ""
            extra += f" [conditions: {s.conditions}]" if s.conditions else ""
            lines.append(f"    - {names[s.article]} {s.start}:{s.end}{extra} “{s.quote}”")
            lines += [f"      also {e.start}:{e.end} “{e.quote}”" for e in s.also]
    return "\n".join(lines)


# The parser ---------------------------------------------------------------------------------
def parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The whole command line; a checkout tool's own flags are added only when it is chosen."""
    top = argparse.ArgumentParser(prog="standpoint", description=__doc__.splitlines()[0])
    top.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = top.add_subparsers(dest="command", required=True)

    summarize = sub.add_parser("summarize", help="Summarize articles; one JSON object per article.")
    summarize.add_argument("paths", nargs="+", help=".txt, .html or .jsonl ({id, text|html}) files")
    add_pipeline_arguments(summarize)
    summarize.add_argument("--pretty", action="store_true", help="indent the JSON")
    summarize.add_argument(
        "--cache",
        type=Path,
        help="result cache (default: STANDPOINT_CACHE_PATH, else <cache_dir>/results.sqlite)",
    )
    summarize.add_argument("--no-cache", action="store_true", help="neither read nor write it")
    summarize.set_defaults(handler=_summarize)

    serve = sub.add_parser("serve", help="Run the HTTP API (and the page at /).")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, help="port (default 8000)")
    add_pipeline_arguments(serve)
    serve.set_defaults(handler=_serve)

    batch = sub.add_parser(
        "batch", help="Summarize a JSONL file, folder or glob into a JSONL file, resumably."
    )
    batch.add_argument(
        "input", help="a JSONL file ({id, text|html} rows), a folder, or a quoted glob"
    )
    batch.add_argument(
        "-o", "--output", required=True, type=Path, help="the JSONL file to append to"
    )
    add_pipeline_arguments(batch)
    batch.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="articles per pipeline call and model batch (default: STANDPOINT_BATCH_SIZE, 8)",
    )
    batch.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes, each with its own model and cores/N torch threads (default 1)",
    )
    batch.add_argument(
        "--cache",
        type=Path,
        help="result cache (default: STANDPOINT_CACHE_PATH, else <cache_dir>/results.sqlite)",
    )
    batch.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    batch.add_argument(
        "--retry-errors",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="on a rerun, run the ids whose last row was an error again (default: yes)",
    )
    batch.add_argument("--no-progress", action="store_true", help="no progress bar")
    batch.set_defaults(handler=_batch)

    briefing = sub.add_parser(
        "brief",
        help="Brief several reports of one event: merged items, what differs, combined summary.",
    )
    briefing.add_argument(
        "paths", nargs="+", help=".txt, .html or .jsonl ({id, text|html, outlet?, title?}) files"
    )
    briefing.add_argument("-o", "--output", type=Path, help="write the briefing as JSON here")
    briefing.add_argument("--json", action="store_true", help="print JSON instead of text")
    briefing.add_argument(
        "--threshold",
        type=float,
        help="merge similarity threshold in (0, 1] (default: the one eval.briefing chose)",
    )
    add_pipeline_arguments(briefing)
    briefing.set_defaults(handler=_brief)

    chosen = next((a for a in (argv or []) if not a.startswith("-")), None)
    for name, (module, help_text) in CHECKOUT_TOOLS.items():
        tool = sub.add_parser(name, help=help_text)
        tool.set_defaults(module=module)
        if name == chosen:
            _checkout_tool(name, module).add_arguments(tool)
    return top


def _checkout_tool(name: str, module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is None or not module.startswith(exc.name):
            raise
        package = module.partition(".")[0]
        raise StandpointError(
            f"{name} runs from a source checkout (python -m service {name} there): "
            f"the {package} package is not installed"
        ) from None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parser(argv).parse_args(argv)
    except StandpointError as exc:
        print(f"standpoint: {printable(exc.message)}", file=sys.stderr)
        return exc.exit_code
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if hasattr(args, "module"):
            return int(_checkout_tool(args.command, args.module).run(args))
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
