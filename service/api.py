"""HTTP API: the request and response types, the dependencies, thin routes and the app factory.

The routes validate and hand articles to the ``Batcher`` (``service.batcher``), which owns the
queue, admission and the model thread; the edge (``service.edge``) owns the middleware and turns
every error into JSON ``{"error": {"status", "message"}}``. Routes hold no try/except.

No ``from __future__ import annotations`` here: the routes are built inside a function, and
FastAPI must see their annotations (which use local values such as the seed examples) as objects.
"""

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field, SkipValidation
from swagger_ui_bundle import swagger_ui_path

from service.batcher import Batcher, Metrics
from service.briefing import MAX_ARTICLES, MIN_ARTICLES, briefing_from, source_articles
from service.edge import EdgeMiddleware, add_error_handlers
from service.errors import InputError, NotReadyError, StandpointError, UnauthorizedError
from service.inputs import parse_article
from service.pipeline import Outcome, Pipeline, build_pipeline
from service.resources import Seed, read_seeds
from service.schemas import Article, Briefing, Result, SourceArticle
from service.settings import Settings, get_settings

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
SWAGGER_UI_DIR = Path(str(swagger_ui_path))  # Swagger UI's files, shipped by swagger-ui-bundle-v2
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


# API types ----------------------------------------------------------------------------------
class SummarizeRequest(Article):
    """One article: exactly one of ``text`` or ``html``, an optional ``id`` and ``options``."""


class SummarizeResponse(Result):
    """The summary, demands and positions; ``text[start:end] == quote`` for every item."""


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Each article is checked on its own (service.inputs.parse_article, in the route), so a
    # bad one gets its own error row instead of failing the request.
    articles: list[SkipValidation[SummarizeRequest]] = Field(
        min_length=1, description="Articles, answered in order (at most max_batch_articles)."
    )


class ErrorBody(BaseModel):
    status: int
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class BatchOk(BaseModel):
    ok: Literal[True] = True
    result: Result


class BatchFailed(BaseModel):
    ok: Literal[False] = False
    error: ErrorBody


class BatchResponse(BaseModel):
    results: list[BatchOk | BatchFailed]


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        400: "The body could not be read as JSON (for instance, not UTF-8).",
        401: "Missing or wrong API key (only when one is configured).",
        413: "Request body over max_body_bytes.",
        422: "Invalid input.",
        429: "The queue is full, or the work ahead would not be done in time; see Retry-After.",
        500: "Unexpected error (logged on the server).",
        503: "The model is not loaded yet or failed, or the request is too big for the deadline.",
        504: "No result within request_timeout_s.",
    }.items()
}


# Dependencies -------------------------------------------------------------------------------
bearer = HTTPBearer(auto_error=False, description="Only when STANDPOINT_API_KEY is set.")


def check_api_key(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    _require_key(request, credentials.credentials if credentials is not None else "")


def _require_key(request: Request, given: str) -> None:
    key = request.app.state.settings.api_key
    if key is None:
        return
    if not hmac.compare_digest(given.encode(), key.get_secret_value().encode()):
        raise UnauthorizedError("missing or wrong API key; send Authorization: Bearer <key>")


class KeyedRoute(APIRoute):
    """A route that checks the API key before FastAPI reads, parses or validates the body:
    without the key, a broken or invalid body is a 401 like any other (FastAPI parses the body
    before it runs any dependency). The routers keep ``Depends(check_api_key)`` too, so the
    OpenAPI schema shows the bearer scheme."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def keyed(request: Request) -> Response:
            scheme, token = get_authorization_scheme_param(request.headers.get("authorization"))
            _require_key(request, token if scheme.lower() == "bearer" else "")
            return await handler(request)

        return keyed


def check_metrics_key(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    if request.app.state.settings.metrics_require_key:
        check_api_key(request, credentials)


def get_batcher(request: Request) -> Batcher:
    batcher: Batcher = request.app.state.batcher
    return batcher


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


BatcherDep = Annotated[Batcher, Depends(get_batcher)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]


# Routes -------------------------------------------------------------------------------------


def _checked(item: Any) -> Article | InputError:
    """One article of a batch request, checked on its own: a bad one is its own error row."""
    try:
        return parse_article(item)
    except InputError as exc:
        return exc


def _outcome(outcome: Outcome) -> BatchOk | BatchFailed:
    if isinstance(outcome, StandpointError):
        return BatchFailed(error=ErrorBody(status=outcome.status_code, message=outcome.message))
    return BatchOk(result=outcome)


def _api_router(seeds: list[Seed]) -> APIRouter:
    examples: dict[str, Any] = {
        seed.id: {"summary": f"seed article {seed.id}", "value": {"id": seed.id, "text": seed.text}}
        for seed in seeds
    }
    examples["html"] = {
        "summary": "HTML input, two-sentence summary, no extraction",
        "value": {
            "html": "<article><h1>Talks resume</h1><p>The union demanded a 5% raise from the "
            "city before the strike ends. The mayor said she opposes any raise this year.</p>"
            "</article>",
            "options": {"summary_sentences": 2, "extraction": False},
        },
    }
    batch_examples = {
        "seeds": {
            "summary": "all seed articles",
            "value": {"articles": [{"id": s.id, "text": s.text} for s in seeds]},
        }
    }
    router = APIRouter(
        route_class=KeyedRoute, dependencies=[Depends(check_api_key)], responses=ERROR_RESPONSES
    )

    @router.post("/v1/summaries", response_model=SummarizeResponse, tags=["summaries"])
    async def summarize(
        article: Annotated[SummarizeRequest, Body(openapi_examples=examples)],
        request: Request,
        batcher: BatcherDep,
    ) -> Result:
        """Summarize one article and extract its demands and positions, with quotes."""
        (outcome,) = await batcher.submit([article], request=request)
        if isinstance(outcome, StandpointError):
            raise outcome
        return outcome

    @router.post("/v1/summaries/batch", tags=["summaries"])
    async def summarize_batch(
        body: Annotated[BatchRequest, Body(openapi_examples=batch_examples)],
        request: Request,
        batcher: BatcherDep,
        settings: SettingsDep,
    ) -> BatchResponse:
        """Many articles in one request; each answered in order with a result or an error."""
        if len(body.articles) > settings.max_batch_articles:
            raise InputError(
                f"{len(body.articles)} articles; the limit is {settings.max_batch_articles} "
                "(STANDPOINT_MAX_BATCH_ARTICLES)"
            )
        checked = [_checked(item) for item in body.articles]
        valid = [a for a in checked if isinstance(a, Article)]
        answers = iter(await batcher.submit(valid, request=request) if valid else [])
        return BatchResponse(
            results=[_outcome(a if isinstance(a, InputError) else next(answers)) for a in checked]
        )

    @router.get("/v1/seeds", tags=["seeds"])
    async def list_seeds() -> list[Seed]:
        """The seed articles standpoint was built from, for trying it out."""
        return seeds

    return router


def _metrics_router() -> APIRouter:
    router = APIRouter(dependencies=[Depends(check_metrics_key)], responses=ERROR_RESPONSES)

    @router.get("/metrics", tags=["operations"], response_class=Response)
    async def metrics(request: Request) -> Response:
        """Prometheus metrics (needs the API key unless STANDPOINT_METRICS_REQUIRE_KEY=false)."""
        request.app.state.metrics.queue_depth.set(request.app.state.batcher.depth)
        return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return router


def _open_router() -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @router.get("/readyz", responses={503: ERROR_RESPONSES[503]})
    async def readyz(batcher: BatcherDep) -> dict[str, str]:
        """The pipeline (and its model) is loaded and requests will be answered."""
        if batcher.pipeline is None:
            raise NotReadyError(batcher.load_error or "the model is loading")
        return {"status": "ready", "model": batcher.pipeline.model_id}

    @router.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    @router.get("/docs", include_in_schema=False)
    async def docs() -> FileResponse:
        """Swagger UI, from the package's own copy (it works offline)."""
        return FileResponse(STATIC_DIR / "docs.html")

    return router


# Briefings: several reports of one event (service.briefing) -------------------------------
class BriefingRequest(BaseModel):
    """2-20 reports of one event, each an article with an optional ``outlet`` and ``title``."""

    model_config = ConfigDict(extra="forbid")

    articles: list[SourceArticle] = Field(
        min_length=MIN_ARTICLES,
        max_length=MAX_ARTICLES,
        description="The reports (at most max_batch_articles too); each is summarized and "
        "extracted like /v1/summaries, then their items are merged.",
    )


class BriefingResponse(Briefing):
    """Merged items with every source's quote (``text[start:end] == quote`` in that article's
    ``text``), what differs across articles, a combined summary, and the articles that failed."""


def _briefing_router(seeds: list[Seed]) -> APIRouter:
    examples: dict[str, Any] = {
        "seeds": {
            "summary": "the two seed reports of one press conference",
            "value": {"articles": [{"id": s.id, "text": s.text} for s in seeds]},
        }
    }
    router = APIRouter(
        route_class=KeyedRoute, dependencies=[Depends(check_api_key)], responses=ERROR_RESPONSES
    )

    @router.post("/v1/briefings", response_model=BriefingResponse, tags=["briefings"])
    async def create_briefing(
        body: Annotated[BriefingRequest, Body(openapi_examples=examples)],
        request: Request,
        batcher: BatcherDep,
        settings: SettingsDep,
    ) -> Briefing:
        """Brief several reports of one event: who demanded what, with which conditions, and
        which articles carried it. Articles that fail are listed in ``failed``; the rest are
        still briefed."""
        if len(body.articles) > settings.max_batch_articles:
            raise InputError(
                f"{len(body.articles)} articles; the limit is {settings.max_batch_articles} "
                "(STANDPOINT_MAX_BATCH_ARTICLES)"
            )
        sources, failed = source_articles(body.articles)
        outcomes = await batcher.submit(sources, request=request)
        briefing = await asyncio.to_thread(briefing_from, sources, outcomes)
        briefing.failed = failed + briefing.failed
        return briefing

    return router


# The app ------------------------------------------------------------------------------------
def create_app(
    settings: Settings | None = None,
    pipeline: Pipeline | None = None,
    *,
    load_model: bool = False,
) -> FastAPI:
    """The app. Without a ``pipeline`` one is built (and its model loaded) after start-up."""
    settings = settings or get_settings()
    metrics = Metrics()
    batcher = Batcher(
        settings=settings,
        metrics=metrics,
        pipeline=pipeline,
        # torch's threads: service.machine, applied when the model loads (one core left over)
        load=lambda: build_pipeline(settings, load_model=load_model),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(
        title="standpoint",
        version="0.1.0",
        summary="Faithful news summaries, demands and positions with verbatim quotes.",
        lifespan=lifespan,
        docs_url=None,  # served below from the package's copy of Swagger UI, not a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.batcher = batcher
    app.include_router(_api_router(read_seeds()))
    app.include_router(_metrics_router())
    app.include_router(_briefing_router(read_seeds()))
    app.include_router(_open_router())
    app.mount("/static/swagger-ui", StaticFiles(directory=SWAGGER_UI_DIR), name="swagger-ui")
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    add_error_handlers(app)
    app.add_middleware(EdgeMiddleware, max_body_bytes=settings.max_body_bytes, metrics=metrics)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    return app
