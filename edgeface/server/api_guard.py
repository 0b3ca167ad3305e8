"""The JSON API's door: bearer tokens only, JSON errors only.

A route declared ``@access(API, role...)`` is reached with ``Authorization: Bearer <token>`` and nothing
else: a session cookie does not authenticate it, so a page in the browser cannot be tricked into calling
it (no CSRF token is needed, and the pages' CSRF rules stay as they are). Failures answer
``{"error": ..., "detail": ...}``: 401 with ``WWW-Authenticate: Bearer`` for a missing, unknown, revoked
or expired token (or a deactivated user), 403 for a token without the route's role, 429 for an address
that failed too often (the login's limit, shared with it).
"""

from __future__ import annotations

import time
from typing import Any

from flask import Response, g, jsonify, request
from werkzeug.http import HTTP_STATUS_CODES

from ..logs import get_logger
from . import api_tokens
from .access import Access
from .services import services

log = get_logger(__name__)

PREFIX = "/api/"
CHALLENGE = 'Bearer realm="edgeface api"'


def is_api_request() -> bool:
    return request.path.startswith(PREFIX)


def error_response(code: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    """``{"error": <the status in words>, "detail": <what went wrong, what to do>}`` with ``code``."""
    name = HTTP_STATUS_CODES.get(code, "error").lower().replace(" ", "_").replace("-", "_")
    resp = jsonify({"error": name, "detail": detail})
    resp.status_code = code
    resp.headers["Cache-Control"] = "no-store"
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def _unauthorized(detail: str, *, invalid: bool) -> Response:
    """401 with the Bearer challenge (RFC 6750: ``error="invalid_token"`` when a token was sent)."""
    return error_response(
        401, detail, {"WWW-Authenticate": f'{CHALLENGE}, error="invalid_token"' if invalid else CHALLENGE}
    )


def guard(rule: Access) -> Response | None:
    """Authenticate an API request (None: go on to the view, with ``g.user`` the token's user and roles)."""
    svc = services()
    cfg = svc.config.server
    ip = (request.remote_addr or "unknown")[:64]
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        return _unauthorized(
            "an API token is required: send 'Authorization: Bearer <token>' (create a token on your account "
            "page, /account; a session cookie does not open the API)",
            invalid=False,
        )
    with svc.db.read() as conn:
        limited = api_tokens.too_many_failures(conn, ip, max_ip=cfg.login_max_failures_ip, window_s=cfg.login_window_s)
        bearer = None if limited else api_tokens.find_bearer(conn, secret)
    if limited:
        log.warning("server.api_refused", ip=ip, path=request.path[:200], why="too many failures from this address")
        return error_response(
            429,
            "too many failed logins or unknown tokens from this address: wait a few minutes and try again",
            {"Retry-After": str(cfg.login_window_s)},
        )
    if bearer is None:
        with svc.db.write() as conn:
            api_tokens.record_failure(conn, ip, cfg.login_window_s)
        log.warning("server.api_auth_failed", ip=ip, path=request.path[:200])
        return _unauthorized(
            "the token is unknown, revoked or expired, or its user is deactivated: create a new one on /account",
            invalid=True,
        )
    g.user, g.session, g.device, g.api_token = bearer.user, None, None, bearer.token_id
    if not bearer.user.has(*rule.roles):
        log.warning(
            "server.forbidden", user=bearer.user.username, endpoint=request.endpoint, needs=sorted(rule.roles), api=True
        )
        return error_response(
            403,
            f"this token's roles ({', '.join(sorted(bearer.user.roles)) or 'none'}) do not include "
            f"{' or '.join(sorted(rule.roles))}, which {request.method} {request.path[:200]} needs",
        )
    if bearer.last_used_at is None or time.time() - bearer.last_used_at > 60:
        with svc.db.write() as conn:
            api_tokens.touch(conn, bearer.token_id)
    return None


def api_error(e: Any) -> Response:
    """An HTTP error raised under /api/ (abort(...) in a view, routing's 404/405) as JSON."""
    code = getattr(e, "code", 500) or 500
    detail = getattr(e, "description", "") or HTTP_STATUS_CODES.get(code, "error")
    return error_response(code, str(detail))
