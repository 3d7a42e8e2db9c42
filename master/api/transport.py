"""The two transports over :data:`console.api.OPERATIONS`: a gRPC servicer and a Starlette HTTP/JSON app.

Both authenticate with the same bearer tokens (gRPC: the ``authorization`` metadata), refuse changes to a
read-only token, and map the console's errors the same way. HTTP bodies and query strings are the request
protobuf in its JSON form (proto field names), answers the response protobuf's JSON form, so the OpenAPI
document is generated from the same descriptors the gRPC contract is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.types import Message as AsgiMessage

from master.api.api import OPERATIONS, Conflict, Console, Invalid, NotFound, Operation, Unavailable
from master.api.auth import Forbidden, Principal, Tokens, Unauthenticated, require_change
from master.catalog import catalog_rows
from vigil.log import get

log = get("console")

# An HTTP body larger than this is refused unread (requests are a few hundred bytes).
MAX_BODY = 64 * 1024
# The web console's static files (HTML, CSS, one script), served at / by the same app as the API.
WEB_ROOT = Path(__file__).parent / "web"
# Every answer forbids inline scripts and styles, plugins, framing and anything from elsewhere: the console
# shows attacker-influenced text (hostnames, URIs, explanations), so an escaping slip must still not run.
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}

_ERRORS: tuple[tuple[type[Exception], int, grpc.StatusCode], ...] = (
    (Unauthenticated, 401, grpc.StatusCode.UNAUTHENTICATED),
    (Forbidden, 403, grpc.StatusCode.PERMISSION_DENIED),
    (NotFound, 404, grpc.StatusCode.NOT_FOUND),
    (Invalid, 400, grpc.StatusCode.INVALID_ARGUMENT),
    (json_format.ParseError, 400, grpc.StatusCode.INVALID_ARGUMENT),
    (Conflict, 409, grpc.StatusCode.FAILED_PRECONDITION),
    (Unavailable, 503, grpc.StatusCode.UNAVAILABLE),
)


def _mapped(exc: Exception) -> tuple[int, grpc.StatusCode] | None:
    for kind, http, code in _ERRORS:
        if isinstance(exc, kind):
            return http, code
    return None


async def call(
    console: Console, tokens: Tokens, op: Operation, request: Message, auth: str | None, via: str
) -> Message:
    who: Principal = tokens.authenticate(auth)
    if op.change:
        require_change(who)
    return await op.method(console, request, who, via)


# -- gRPC --------------------------------------------------------------------------------------------------


def _grpc_method(op: Operation) -> Callable[..., Any]:
    async def method(self: ConsoleServicer, request: Message, context: grpc.aio.ServicerContext) -> Message:
        auth = dict(context.invocation_metadata() or ()).get("authorization")
        try:
            return await call(self.console, self.tokens, op, request, auth, "grpc")
        except Exception as exc:
            mapped = _mapped(exc)
            if mapped is None:
                log.exception("console_error", operation=op.name)
                await context.abort(grpc.StatusCode.INTERNAL, "internal error")
            else:
                await context.abort(mapped[1], str(exc))
            raise

    method.__name__ = op.name
    return method


class ConsoleServicer:
    """The generated servicer's methods, each made from its row of OPERATIONS below."""

    def __init__(self, console: Console, tokens: Tokens) -> None:
        self.console = console
        self.tokens = tokens


for _op in OPERATIONS.values():
    setattr(ConsoleServicer, _op.name, _grpc_method(_op))


# -- HTTP ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpRoute:
    method: str
    path: str
    operation: str


ROUTES = (
    HttpRoute("GET", "/v1/devices", "ListDevices"),
    HttpRoute("GET", "/v1/devices/{device_id}", "GetDevice"),
    HttpRoute("GET", "/v1/breaches", "ListBreaches"),
    HttpRoute("GET", "/v1/incidents", "ListIncidents"),
    HttpRoute("GET", "/v1/incidents/{incident_id}", "GetIncident"),
    HttpRoute("POST", "/v1/incidents/{incident_id}/status", "SetIncidentStatus"),
    HttpRoute("GET", "/v1/actions", "ListActions"),
    HttpRoute("POST", "/v1/actions/{action_id}/confirm", "ConfirmAction"),
    HttpRoute("POST", "/v1/actions/{action_id}/extend", "ExtendAction"),
    HttpRoute("POST", "/v1/actions/{action_id}/clear", "ClearAction"),
    HttpRoute("POST", "/v1/acknowledge", "Acknowledge"),
    HttpRoute("POST", "/v1/suppressions", "Suppress"),
    HttpRoute("GET", "/v1/audit", "ListAudit"),
)


def _query(params: Any, descriptor: Any) -> dict[str, Any]:
    """Query parameters as the request's JSON form: booleans from true/false, the rest as text."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        field = descriptor.fields_by_name.get(key)
        if field is not None and field.type == FieldDescriptor.TYPE_BOOL:
            out[key] = value.lower() in ("true", "1", "yes")
        else:
            out[key] = value
    return out


def _error(status: int, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _endpoint(console: Console, tokens: Tokens, route: HttpRoute) -> Callable[[Request], Any]:
    op = OPERATIONS[route.operation]

    async def endpoint(request: Request) -> Response:
        try:
            tree = _query(request.query_params, op.request.DESCRIPTOR)
            if route.method == "POST":
                body = await request.body()
                if len(body) > MAX_BODY:
                    return _error(413, "request body too large")
                parsed = json_format.Parse(body or b"{}", op.request()) if body else op.request()
                tree.update(json_format.MessageToDict(parsed, preserving_proto_field_name=True))
            tree.update(request.path_params)
            message = json_format.ParseDict(tree, op.request())
            answer = await call(console, tokens, op, message, request.headers.get("authorization"), "http")
        except Exception as exc:
            mapped = _mapped(exc)
            if mapped is None:
                log.exception("console_error", operation=op.name)
                return _error(500, "internal error")
            return _error(mapped[0], str(exc))
        return JSONResponse(json_format.MessageToDict(answer, preserving_proto_field_name=True))

    return endpoint


class SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every HTTP answer (pure ASGI: no buffering of bodies)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: AsgiMessage) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.decode().lower() not in SECURITY_HEADERS
                ]
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def http_app(console: Console, tokens: Tokens) -> Starlette:
    document = openapi()
    models = {"models": catalog_rows()}

    async def serve_openapi(request: Request) -> Response:
        return JSONResponse(document)

    async def list_models(request: Request) -> Response:
        # The model catalog is code, not state: the same for every caller, but still behind a token.
        try:
            tokens.authenticate(request.headers.get("authorization"))
        except Unauthenticated as exc:
            return _error(401, str(exc))
        return JSONResponse(models)

    routes: list[Route | Mount] = [
        Route(r.path, _endpoint(console, tokens, r), methods=[r.method]) for r in ROUTES
    ]
    routes.append(Route("/v1/models", list_models, methods=["GET"]))
    routes.append(Route("/openapi.json", serve_openapi, methods=["GET"]))
    # Last: everything else is the web console's files (index.html at /).
    routes.append(Mount("/", StaticFiles(directory=WEB_ROOT, html=True), name="web"))
    return Starlette(routes=routes, middleware=[Middleware(SecurityHeaders)])


# -- OpenAPI ------------------------------------------------------------------------------------------------

_SCALARS: dict[int, dict[str, Any]] = {
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "format": "byte"},
    FieldDescriptor.TYPE_DOUBLE: {"type": "number"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number"},
    FieldDescriptor.TYPE_UINT32: {"type": "integer", "minimum": 0},
    FieldDescriptor.TYPE_INT32: {"type": "integer"},
    # 64-bit integers are strings in protobuf's JSON mapping.
    FieldDescriptor.TYPE_UINT64: {"type": "string", "format": "uint64"},
    FieldDescriptor.TYPE_INT64: {"type": "string", "format": "int64"},
}
_WELL_KNOWN = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?\d+(\.\d+)?s$", "example": "3600s"},
}


def _field_schema(field: Any, schemas: dict[str, Any]) -> dict[str, Any]:
    item: dict[str, Any]
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        full = field.message_type.full_name
        item = _WELL_KNOWN.get(full) or {
            "$ref": f"#/components/schemas/{_schema(field.message_type, schemas)}"
        }
    elif field.type == FieldDescriptor.TYPE_ENUM:
        item = {"type": "string", "enum": [v.name for v in field.enum_type.values]}
    else:
        item = dict(_SCALARS.get(field.type) or {"type": "string"})
    return {"type": "array", "items": item} if field.is_repeated else item


def _schema(descriptor: Any, schemas: dict[str, Any]) -> str:
    name = str(descriptor.full_name).replace("vigil.", "").replace(".v1.", ".")
    if name not in schemas:
        schemas[name] = {}  # placeholder: a message that refers to itself
        schemas[name] = {
            "type": "object",
            "properties": {f.name: _field_schema(f, schemas) for f in descriptor.fields},
        }
    return name


def _models_spec() -> dict[str, Any]:
    row = {"type": "object", "properties": {k: {"type": "string"} for k in catalog_rows()[0]}}
    return {
        "operationId": "ListModels",
        "summary": "ListModels (any token): the model catalog, as `vigil models --json` prints it",
        "parameters": [],
        "responses": {
            "200": {
                "description": "OK",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {"models": {"type": "array", "items": row}},
                        }
                    }
                },
            },
            "401": {
                "description": "No token, or one no configured holder has",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            },
        },
    }


def openapi() -> dict[str, Any]:
    schemas: dict[str, Any] = {"Error": {"type": "object", "properties": {"error": {"type": "string"}}}}
    paths: dict[str, Any] = {}
    for route in ROUTES:
        op = OPERATIONS[route.operation]
        request = op.request.DESCRIPTOR
        in_path = [p.strip("{}") for p in route.path.split("/") if p.startswith("{")]
        params = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in in_path]
        spec: dict[str, Any] = {
            "operationId": op.name,
            "summary": f"{op.name} ({'operator role' if op.change else 'any token'})",
            "responses": {
                "200": {
                    "description": "OK",
                    "content": {
                        "application/json": {
                            "schema": {
                                "$ref": f"#/components/schemas/{_schema(op.response.DESCRIPTOR, schemas)}"
                            }
                        }
                    },
                },
                **{
                    str(status): {
                        "description": kind.__doc__.strip().splitlines()[0]
                        if kind.__doc__
                        else kind.__name__,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                    }
                    for kind, status, _ in _ERRORS
                    if kind is not json_format.ParseError
                },
            },
        }
        if route.method == "GET":
            params += [
                {"name": f.name, "in": "query", "required": False, "schema": _field_schema(f, schemas)}
                for f in request.fields
                if f.name not in in_path
            ]
        else:
            spec["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{_schema(request, schemas)}"}
                    }
                },
            }
        spec["parameters"] = params
        paths.setdefault(route.path, {})[route.method.lower()] = spec
    paths["/v1/models"] = {"get": _models_spec()}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Vigil console API", "version": "v1"},
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas,
        },
        "paths": paths,
    }
