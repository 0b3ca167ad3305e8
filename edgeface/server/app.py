"""The application factory, the access guard every request passes, login/logout, the audit view.

Every request goes through :func:`_guard` before its view: the view's :mod:`access` declaration
decides between public, a device's HTTP Basic credentials, or a user session holding a role; every
state-changing request must carry the session's CSRF token (the login form: its double-submit cookie).
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, abort, g, redirect, render_template, request, send_from_directory, url_for
from werkzeug.middleware.proxy_fix import ProxyFix

from ..config import Config
from ..logs import get_logger
from . import api_guard, audit, auth
from . import metrics as server_metrics
from .access import API, DEVICE, PUBLIC, access, rule_of
from .db import Database
from .services import Services, services

log = get_logger(__name__)

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
PRE_COOKIE = "edgeface_login_csrf"
STATIC = Path(__file__).parent / "static"


def session_cookie_name(config: Config) -> str:
    return "__Host-edgeface" if config.server.cookie_secure else "edgeface_session"


def create_app(config: Config, *, db: Database | None = None, migrate: bool = True) -> Flask:
    """The web application for ``config``; ``migrate`` brings the schema up to date first."""
    app = Flask(__name__, static_folder=None, template_folder=str(Path(__file__).parent / "templates"))
    db = db or Database(config.server.database_url)
    if migrate:
        db.migrate()
    app.extensions["edgeface"] = Services(config, db)
    app.config.update(MAX_CONTENT_LENGTH=config.server.max_upload_bytes, TEMPLATES_AUTO_RELOAD=False)
    if config.server.trusted_proxies:
        n = config.server.trusted_proxies
        # Flask documents replacing wsgi_app to add middleware; mypy sees a method being reassigned.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]

    from . import accounts, api_v1, api_v1_gallery, cases, fleet, gallery_admin, photo_search, plots, review

    for bp in (review.bp, cases.bp, gallery_admin.bp, fleet.bp, accounts.bp, plots.bp, photo_search.bp):
        app.register_blueprint(bp)
    from . import learn_pages  # learning from review (administrators)

    app.register_blueprint(learn_pages.bp)
    app.register_blueprint(api_v1.bp)
    app.register_blueprint(api_v1_gallery.bp)
    app.before_request(_guard)
    app.after_request(_headers)
    app.context_processor(
        lambda: {"user": g.get("user"), "csrf_token": _page_csrf(), "now": time.time(), "fmt_time": fmt_time}
    )
    for code in (400, 401, 403, 404, 405, 409, 413, 422, 429, 500):
        app.register_error_handler(code, _error)

    app.add_url_rule("/", "home", home)
    app.add_url_rule("/login", "login", login, methods=["GET", "POST"])
    app.add_url_rule("/logout", "logout", logout, methods=["POST"])
    app.add_url_rule("/audit", "audit_view", audit_view)
    app.add_url_rule("/healthz", "healthz", healthz)
    app.add_url_rule("/static/<path:filename>", "static", static)
    server_metrics.install(app, config, db)
    return app


def fmt_time(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) + " UTC" if ts else "—"


def client_ip() -> str:
    return (request.remote_addr or "unknown")[:64]


def submitted_csrf() -> str | None:
    return request.headers.get("X-CSRF-Token") or request.form.get("csrf_token")


def _page_csrf() -> str:
    sess = g.get("session")
    return sess.csrf_token if sess is not None else g.get("pre_csrf", "")


def _guard() -> Any:
    if request.endpoint is None:  # no such route / method: routing answers 404 or 405
        return None
    from flask import current_app

    rule = rule_of(current_app.view_functions.get(request.endpoint))
    if rule is None:
        log.error("server.route_without_access", endpoint=request.endpoint, hint="decorate the view with @access(...)")
        abort(500)
    svc = services()
    g.user = g.session = g.device = None
    if rule.kind == API:  # bearer tokens only, JSON errors: never a session cookie, so no CSRF token
        return api_guard.guard(rule)
    if rule.kind == PUBLIC:
        g.pre_csrf = request.cookies.get(PRE_COOKIE) or secrets.token_urlsafe(32)
        if request.method not in SAFE_METHODS and not auth.csrf_ok(request.cookies.get(PRE_COOKIE), submitted_csrf()):
            abort(400, "The form's security token is missing or expired: reload the page and try again.")
        return None
    if rule.kind == DEVICE:
        creds = request.authorization
        ok = False
        if creds is not None and creds.type == "basic" and creds.username and creds.password:
            with svc.db.read() as conn:
                ok = auth.check_device(conn, creds.username, creds.password)
        if not ok:
            log.warning(
                "server.device_auth_failed",
                device=(creds.username if creds else None),
                ip=client_ip(),
                path=request.path[:200],
            )
            return Response(
                "device credentials required\n",
                401,
                {"WWW-Authenticate": 'Basic realm="edgeface gallery", charset="UTF-8"', "Content-Type": "text/plain"},
            )
        assert creds is not None and creds.username  # ok is only True with both
        g.device = creds.username
        return None
    cfg = svc.config.server
    with svc.db.read() as conn:
        sess = auth.find_session(
            conn,
            request.cookies.get(session_cookie_name(svc.config)),
            idle_s=cfg.session_idle_s,
            max_s=cfg.session_max_s,
        )
    if sess is None:
        if request.method == "GET" and "text/html" in request.headers.get("Accept", ""):
            return redirect(url_for("login", next=request.full_path.rstrip("?")))
        abort(401)
    g.user, g.session = sess.user, sess
    if not sess.user.has(*rule.roles):
        log.warning("server.forbidden", user=sess.user.username, endpoint=request.endpoint, needs=sorted(rule.roles))
        if not sess.user.roles:
            abort(
                403,
                "Your account has no role yet: the role an administrator asked for waits for a second "
                "administrator's approval.",
            )
        abort(403)
    if request.method not in SAFE_METHODS and not auth.csrf_ok(sess.csrf_token, submitted_csrf()):
        log.warning("server.csrf_refused", user=sess.user.username, endpoint=request.endpoint)
        abort(403, "The form's security token is missing or wrong: reload the page and try again.")
    if time.time() - sess.last_seen > 60:
        with svc.db.write() as conn:
            auth.touch_session(conn, sess.token_hash)
    return None


def _headers(resp: Response) -> Response:
    resp.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; "
        "style-src 'self'; script-src 'self'; form-action 'self'; frame-ancestors 'none'; "
        "base-uri 'none'",
    )
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("X-Frame-Options", "DENY")
    resp.headers.setdefault("Referrer-Policy", "same-origin")
    if g.get("user") is not None:
        resp.headers.setdefault("Cache-Control", "private, no-store")
    pre = g.get("pre_csrf")
    if pre and request.cookies.get(PRE_COOKIE) != pre:
        resp.set_cookie(
            PRE_COOKIE, pre, httponly=True, samesite="Strict", secure=services().config.server.cookie_secure, path="/"
        )
    return resp


def _error(e: Any) -> Any:
    if api_guard.is_api_request():
        return api_guard.api_error(e)
    code = getattr(e, "code", 500) or 500
    text = getattr(e, "description", "") or "error"
    if code == 401 and request.accept_mimetypes.accept_html:
        text = "Log in first."
    return render_template("error.html", code=code, text=text), code


def audit_actor() -> str:
    if g.get("user") is not None:
        return g.user.username
    if g.get("device"):
        return f"device:{g.device}"
    return "anonymous"


# -- views ---------------------------------------------------------------------------------------------


@access("reviewer", "admin")
def home() -> Any:
    return redirect(url_for("review.queue") if g.user.has("reviewer") else url_for("gallery_admin.index"))


def _safe_next(target: str | None) -> str:
    if not target:
        return url_for("home")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("home")
    return target


@access(PUBLIC)
def login() -> Any:
    svc = services()
    if request.method == "GET":
        return render_template("login.html", next=request.args.get("next", ""), error=None)
    cfg = svc.config.server
    username = (request.form.get("username") or "").strip()[:64]
    password = request.form.get("password") or ""
    ip = client_ip()
    with svc.db.write() as conn:
        out = auth.authenticate(
            conn,
            username,
            password,
            ip,
            max_user=cfg.login_max_failures,
            max_ip=cfg.login_max_failures_ip,
            window_s=cfg.login_window_s,
        )
        if out.user is None:
            audit.append(
                conn,
                username or "(empty)",
                "login.refused" if out.refused else "login.failed",
                ip,
                {"reason": out.reason},
            )
        else:
            token = auth.open_session(conn, out.user, ip)
            audit.append(conn, out.user.username, "login.ok", ip, {"roles": sorted(out.user.roles)})
    if out.user is None:
        log.warning("server.login_failed", user=username, ip=ip, refused=out.refused)
        status = 429 if out.refused else 401
        msg = (
            "Too many failed logins: wait a few minutes and try again."
            if out.refused
            else "Wrong user name or password."
        )
        return render_template("login.html", next=request.form.get("next", ""), error=msg), status
    resp = redirect(_safe_next(request.form.get("next")))
    resp.set_cookie(
        session_cookie_name(svc.config),
        token,
        httponly=True,
        samesite="Lax",
        secure=cfg.cookie_secure,
        path="/",
        max_age=cfg.session_max_s,
    )
    resp.delete_cookie(PRE_COOKIE, path="/")
    g.pre_csrf = None
    return resp


@access("reviewer", "admin")
def logout() -> Any:
    svc = services()
    with svc.db.write() as conn:
        auth.close_session(conn, g.session.token_hash)
        audit.append(conn, g.user.username, "logout", client_ip())
    resp = redirect(url_for("login"))
    resp.delete_cookie(session_cookie_name(svc.config), path="/")
    return resp


@access("reviewer", "admin")
def audit_view() -> Any:
    svc = services()
    action = request.args.get("action") or None
    before = request.args.get("before", type=int)
    with svc.db.read() as conn:
        entries = audit.entries(conn, limit=200, before=before, action=action)
        check = audit.verify(conn)
    return render_template("audit.html", entries=entries, check=check, action=action or "")


@access(PUBLIC)
def healthz() -> Any:
    with services().db.read() as conn:
        conn.exec_driver_sql("SELECT 1")
    return {"ok": True}


@access(PUBLIC)
def static(filename: str) -> Any:
    return send_from_directory(STATIC, filename, max_age=3600)
