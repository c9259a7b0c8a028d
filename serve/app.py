"""The HTTP endpoint: a FastAPI ingress on one Serve deployment, a thin skin over the router.

Every request becomes one `RouteRequest` for the same router actor the notebook and the
backtest use; this module only translates, authenticates and maps errors. Routes:

    POST /v1/chat/completions   OpenAI-compatible (model = provider or policy alias)
    GET  /v1/models             providers and policy aliases
    POST /v1/analyze            MarketContext or OHLCV bars → TradeSignal + trace
    POST /v1/risk               trade proposal + context → RiskAssessment + trace
    GET  /v1/providers          breaker state, rolling metrics, limits
    POST /v1/providers/{name}/reset   (admin) close a breaker by hand
    GET  /v1/costs?by=hour|day  GET /v1/performance  GET /v1/budgets  PUT /v1/budgets (admin)
    POST /v1/feedback           GET /v1/requests/{id}  (audit rows)
    GET  /healthz

No `from __future__ import annotations` here: FastAPI must see real types on the methods
Serve wraps, or `request: Request` turns into a required body field.
"""

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import ray
from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse
from ray import serve
from starlette.datastructures import Headers

from actors import spend
from actors.api import RouterClient, attach, connect
from actors.channel import ChannelBroken
from actors.config import Config, load_config, parse_config
from actors.route import RouteRequest, RouteResult, RoutingError
from actors.router import RouterSpec
from actors.tokens import estimate_messages
from serve import cache_option, chat_route, native, reads
from serve import openai_compat as oai
from serve.auth import AuthDigests, Verifier, digests, require_loopback
from serve.errors import (
    REPLAYED_HEADER,
    SIMULATED_HEADER,
    ApiError,
    bad_request,
    from_routing_error,
    install,
    not_found,
)
from serve.health import coming_up, router_answers
from serve.hosts import HostAllowList
from serve.middleware import ADMIN_ONLY, Gate, GateSettings
from serve.openai_stream import ChunkWriter
from serve.spec import ServeSpec

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_HEADER = "x-request-timeout"
#: The OpenAI SDK announces its own client timeout; working past it helps nobody.
CLIENT_TIMEOUT_HEADER = "x-stainless-timeout"

app = FastAPI(title="llm-router", version="0.1.0",
              description="Multi-LLM router for trading analysis (native and OpenAI-compatible).")
app.add_middleware(Gate)  # answers 503 until a replica has filled in app.state.gate
install(app)
#: Plain ASGI, not a FastAPI route: the hot path, streamed tokens (serve/chat_route.py).
app.router.add_route("/v1/chat/completions", chat_route.ReplicaRoute("chat_completions"),
                     methods=["POST"], include_in_schema=False)
chat_route.document(app, "/v1/chat/completions", oai.ChatRequest,
                    "Chat completions, OpenAI-compatible (stream: true for server-sent events)")


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """A summary frame as JSON rows (index levels become columns, NaN becomes null)."""
    if df is None or df.empty:
        return []
    flat = df.reset_index() if any(n is not None for n in df.index.names) else df
    return json.loads(flat.to_json(orient="records", date_format="iso"))


def _seconds(raw: str, param: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise bad_request(f"{param} must be a positive number of seconds, not {raw!r}", param)
    return value


def _bind_host() -> str | None:
    """The address Serve's HTTP ingress listens on (None, i.e. not loopback, if unknown)."""
    from ray.serve.context import _get_global_client

    try:
        return _get_global_client().http_config.host
    except Exception as exc:
        log.warning("cannot read Serve's HTTP options (%s): assuming a public address",
                    type(exc).__name__)
        return None


@serve.deployment(name="RouterIngress", max_ongoing_requests=128, max_queued_requests=256,
                  ray_actor_options={"num_cpus": 0.25})
@serve.ingress(app)
class RouterIngress:
    """One replica: attaches to the running router (or starts it) and serves HTTP.

    `auth` holds keyed MACs of the tokens (`serve.auth.digests`), never the tokens themselves.
    """

    def __init__(self, config: dict[str, Any], auth: dict[str, Any]) -> None:
        self.config: Config = parse_config(config, "serve app config")
        self.spec = ServeSpec.from_config(self.config)
        self.auth = AuthDigests.model_validate(auth)
        require_loopback(self.auth, _bind_host())  # however the app was deployed
        self.router_timeout = RouterSpec.model_validate(self.config.router).default_timeout_s
        self.created = int(time.time())
        try:
            self.llm: RouterClient = attach(self.config)
        except RuntimeError:
            if not self.spec.start_system:
                raise
            log.info("no router running: starting the actors")
            self.llm = connect(config=self.config)
        self.config = self.llm.config  # what the router runs: providers left out, simulated
        self.token_limit = self.spec.token_limit(self.config)
        app.state.gate = GateSettings(
            Verifier.from_digests(self.auth), HostAllowList.of(self.spec.allowed_hosts),
            self.spec.auth.public_health, self.spec.max_body_bytes)
        app.state.chat_completions = self.chat

    async def check_health(self) -> None:
        """Serve's probe: the replica is healthy while the router answers it or Ray is
        restarting it; a router that does not answer is a failed check, never the
        replica's crash (serve/health.py)."""
        await router_answers(self.llm.budgets, lambda: coming_up(self.llm.handles.router))

    # -- the request path ----------------------------------------------------------------

    def _timeout(self, given: float | None, headers: Headers) -> float:
        """Deadline from the body, else the header, else the default; capped by the
        client's own timeout when it announces one."""
        t = given
        if t is None and (raw := headers.get(TIMEOUT_HEADER)) is not None:
            t = _seconds(raw, "timeout")
        if t is not None and t > self.spec.max_timeout_s:
            raise bad_request(f"timeout {t} s is above the limit {self.spec.max_timeout_s} s",
                              "timeout")
        t = t or self.spec.default_timeout_s or self.router_timeout
        if (raw := headers.get(CLIENT_TIMEOUT_HEADER)) is not None:
            try:
                t = min(t, float(raw)) if float(raw) > 0 else t
            except ValueError:
                pass
        return t

    async def _route(self, req: RouteRequest, headers: Headers) -> RouteResult:
        assert req.timeout is not None
        req = cache_option.apply(req, headers.get(cache_option.CACHE_HEADER))
        try:
            async with asyncio.timeout(req.timeout + self.spec.timeout_grace_s):
                return await self.llm.aroute(req)
        except (RoutingError, TimeoutError, ray.exceptions.RayError, ChannelBroken) as exc:
            raise self._api_error(exc, req) from None

    def _api_error(self, exc: BaseException, req: RouteRequest) -> BaseException:
        """The HTTP answer for a request the router could not serve (others re-raised)."""
        if isinstance(exc, RoutingError):
            wanted = [n for n in [req.provider, *(req.fallbacks or [])] if n]
            window = max(self.config.provider(n).max_input_tokens
                         for n in (wanted or self.config.names))
            return from_routing_error(exc, wanted or None,
                                      estimate_messages(req.messages) > window)
        if isinstance(exc, TimeoutError):
            return ApiError(504, "deadline_exceeded", f"no answer within the {req.timeout:g} s "
                            "deadline", "timeout", "deadline")
        if isinstance(exc, ray.exceptions.RayError | ChannelBroken):
            log.warning("router call failed: %s", type(exc).__name__)
            return ApiError(503, "router_unavailable", "the router is unavailable "
                            "(restarting?); retry shortly", None, "router_unavailable",
                            {"retry-after": "1"})
        return exc

    async def chat(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """POST /v1/chat/completions, streamed or not (a plain ASGI route: see
        serve/chat_route.py; errors raised here get the app's error handlers)."""
        body = chat_route.parse(oai.ChatRequest, await chat_route.read_body(receive))
        headers = Headers(scope=scope)
        req = oai.to_route(body, self.config, self.token_limit,
                           self._timeout(body.timeout, headers))
        if body.stream:
            include = bool(body.stream_options and body.stream_options.include_usage)
            await self._stream(req, include, headers, send)
            return
        r = await self._route(req, headers)
        await JSONResponse(oai.completion(r), headers=native.trace_headers(r))(
            scope, receive, send)

    async def _stream(self, req: RouteRequest, include_usage: bool, headers: Headers,
                      send: Any) -> None:
        """Server-sent events as the provider's tokens arrive. A failure before the first
        token is an ordinary error answer (status and all); after it, an error event ends
        the stream. A client that disconnects cancels the provider's stream."""
        assert req.timeout is not None
        req = cache_option.apply(req, headers.get(cache_option.CACHE_HEADER))
        source = self.llm.stream_route(req)
        try:
            async with asyncio.timeout(req.timeout + self.spec.timeout_grace_s):
                start = await anext(source)
        except BaseException as exc:
            await source.aclose()  # type: ignore[attr-defined]
            if isinstance(exc, StopAsyncIteration):
                raise ApiError(500, "internal_error", "the stream ended before it started",
                               None, "internal") from None
            raise self._api_error(exc, req) from None
        out = {"x-router-request-id": start.request_id, "x-router-provider": start.provider,
               "x-router-model": start.model, "x-router-policy": start.policy,
               "cache-control": "no-cache"}
        if start.simulated:
            out[SIMULATED_HEADER] = "true"
        if start.replayed:
            out[REPLAYED_HEADER] = "true"
        if start.cached:
            out[cache_option.CACHE_HEADER] = "hit"
        writer = ChunkWriter(start.request_id, start.provider, include_usage)
        await chat_route.send_stream(send, out, self._events(source, writer))

    async def _events(self, source: Any, writer: ChunkWriter) -> Any:
        try:
            async for item in source:
                if isinstance(item, RouteResult):
                    yield writer.end(item)
                    return
                yield writer.event(item)
        except RoutingError as exc:  # after the first token: no fallback, an error event
            yield writer.error(from_routing_error(exc).body())
        except ChannelBroken as exc:
            yield writer.error(ApiError(503, "router_unavailable", f"the stream broke: {exc}",
                                        None, "router_unavailable").body())
        finally:
            await source.aclose()

    @app.get("/v1/models")
    async def models(self) -> JSONResponse:
        return JSONResponse(oai.models(self.config, self.created))

    @app.post("/v1/analyze")
    async def analyze(self, body: native.AnalyzeRequest, request: Request) -> JSONResponse:
        native.check_route(body, self.config, self.token_limit)
        timeout = self._timeout(body.timeout, request.headers)
        req = await asyncio.to_thread(native.route_request, body, body.task, self.config, timeout)
        r = await self._route(req, request.headers)
        return JSONResponse(native.result_body(r, "signal"), headers=native.trace_headers(r))

    @app.post("/v1/risk")
    async def risk(self, body: native.RiskRequest, request: Request) -> JSONResponse:
        native.check_route(body, self.config, self.token_limit)
        timeout = self._timeout(body.timeout, request.headers)
        req = await asyncio.to_thread(native.route_request, body, "risk", self.config, timeout,
                                      body.position)
        r = await self._route(req, request.headers)
        return JSONResponse(native.result_body(r, "risk"), headers=native.trace_headers(r))

    # -- state and reports ---------------------------------------------------------------

    async def _listing(self, fn: Any, *args: Any, **extra: Any) -> JSONResponse:
        """A client report (a DataFrame, read off the health checks' pool) as a list."""
        df = await reads.read(fn, *args)
        return JSONResponse({"object": "list", **extra, "data": _records(df)})

    @app.get("/v1/providers")
    async def providers(self) -> JSONResponse:
        return await self._listing(self.llm.status)

    @app.post("/v1/providers/{name}/reset", dependencies=[ADMIN_ONLY])
    async def reset(self, name: str) -> JSONResponse:
        if name not in self.config.names:
            raise not_found(f"unknown provider {name!r}; configured: "
                            f"{', '.join(self.config.names)}", "name")
        snap = await reads.read(self.llm.reset, name)
        return JSONResponse({"provider": name, "state": snap.get("state"), "snapshot": snap})

    @app.get("/v1/costs")
    async def costs(self, by: Literal["hour", "day"] = Query("hour"),
                    since: str | None = None, until: str | None = None,
                    group_by: Literal["provider", "user"] = Query("provider")) -> JSONResponse:
        """Spend per period over [since, until) (unix seconds or ISO 8601; default recent),
        by provider (and model) or by user."""
        try:
            start, end = spend.window(by, since, until)
        except spend.WindowError as exc:
            raise bad_request(str(exc), exc.param) from None
        return await self._listing(self.llm.costs, by, start, end, group_by, by=by,
                                   group_by=group_by, **spend.describe_window(start, end))

    @app.get("/v1/performance")
    async def performance(self, by_context: bool = False) -> JSONResponse:
        return await self._listing(self.llm.performance, by_context)

    @app.get("/v1/budgets")
    async def budgets(self) -> JSONResponse:
        return await self._listing(self.llm.budgets)

    @app.put("/v1/budgets", dependencies=[ADMIN_ONLY])
    async def set_budgets(self, request: Request) -> JSONResponse:
        """(admin) Merge a change into the budget limits (JSON merge patch: null removes a
        limit); spend so far counts against the new ones."""
        try:
            body = await request.json()
        except ValueError:
            raise bad_request("body is not valid JSON") from None
        if not isinstance(body, dict):
            raise bad_request("body must be a JSON object like {\"hourly_usd\": 5}")
        try:
            df = await reads.read(self.llm.set_budgets, body)
        except ValueError as exc:  # pydantic's ValidationError names the bad key
            first = getattr(exc, "errors", lambda: [{}])()[0]
            param = ".".join(str(x) for x in first.get("loc", ())) or None
            raise bad_request(f"invalid budgets: {first.get('msg', exc)}", param) from None
        return JSONResponse({"object": "list", "data": _records(df)})

    @app.post("/v1/feedback")
    async def feedback(self, body: native.FeedbackRequest) -> JSONResponse:
        try:
            await reads.read(self.llm.feedback, body.request_id, body.score)
        except KeyError:
            raise not_found(f"unknown request id {body.request_id!r}", "request_id") from None
        return JSONResponse({"request_id": body.request_id, "score": body.score, "ok": True})

    @app.get("/v1/requests/{request_id}")
    async def audit(self, request_id: str) -> JSONResponse:
        try:
            rows = await reads.read(self.llm.audit, request_id)
        except KeyError:
            raise not_found(f"unknown request id {request_id!r}", "request_id") from None
        return JSONResponse({"request_id": request_id, "records": json.loads(
            json.dumps(rows, default=str))})

    @app.get("/healthz")
    async def healthz(self) -> JSONResponse:
        try:
            await asyncio.wait_for(asyncio.to_thread(self.llm.budgets), 5)
        except Exception as exc:
            return ApiError(503, "router_unavailable", f"router not answering "
                            f"({type(exc).__name__})", None, "router_unavailable").response()
        return JSONResponse({"status": "ok", "providers": self.config.names})


def build(args: dict[str, Any] | None = None) -> serve.Application:
    """Serve app builder (`import_path: serve.app:build` in configs/serve.yaml).

    args: `config` = path of the router config (default: $LLM_ROUTER_CONFIG or the shipped
    configs/providers.yaml), or `config_data` = the config itself as a mapping.
    """
    args = dict(args or {})
    if "config_data" in args:
        cfg = parse_config(args["config_data"], "config_data")
    else:
        path = args.get("config")
        if path and not Path(path).is_absolute() and not Path(path).exists():
            path = ROOT / path  # serve.yaml paths are relative to the project, not the worker
        cfg = load_config(path)
    return application(cfg)


def application(cfg: Config, auth: AuthDigests | None = None,
                **options: Any) -> serve.Application:
    """The app every deployment path builds (`build`, `llm-router serve`, tests).

    The tokens are read here, so a missing one stops the deployment before any replica
    starts; only their keyed MACs are bound into the replicas' arguments. `options`: the
    deployment's `.options()` (from the Serve config).
    """
    spec = ServeSpec.from_config(cfg)  # fail at deploy time, not in every replica
    auth = auth or digests(spec.auth)
    ingress = RouterIngress.options(**options) if options else RouterIngress
    return ingress.bind(cfg.model_dump(mode="json"), auth.model_dump())

