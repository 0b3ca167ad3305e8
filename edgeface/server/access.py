"""Who may call a route. Every view declares it with :func:`access`; the app refuses (500, logged) any
request to a view without a declaration, so a new route is closed until someone decides who may use it.

    @access("reviewer")            a logged-in user holding the role (several names: any of them)
    @access("admin")
    @access(PUBLIC)                anyone (the login page, static files, the health check)
    @access(DEVICE)                a field unit with its own credentials (HTTP Basic), never a user session
    @access(API, "reviewer")       the JSON API: a user's bearer token holding the role, never a session
                                   cookie (so no CSRF token either); errors answer JSON
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

PUBLIC = "public"
DEVICE = "device"
API = "api"
ROLES = ("reviewer", "admin")
ATTR = "_edgeface_access"


@dataclass(frozen=True)
class Access:
    kind: str  # "public", "device", "user" or "api"
    roles: frozenset[str] = frozenset()


def access(*who: str) -> Callable[[F], F]:
    if not who:
        raise ValueError("access() needs PUBLIC, DEVICE or at least one role")
    if who in ((PUBLIC,), (DEVICE,)):
        rule = Access(who[0])
    else:
        kind, roles = (API, who[1:]) if who[0] == API else ("user", who)
        unknown = set(roles) - set(ROLES)
        if unknown or not roles:
            raise ValueError(f"unknown role(s) {sorted(unknown) or '(none)'}; roles are {ROLES}")
        rule = Access(kind, frozenset(roles))

    def mark(view: F) -> F:
        setattr(view, ATTR, rule)
        return view

    return mark


def rule_of(view: Callable[..., Any] | None) -> Access | None:
    return getattr(view, ATTR, None) if view is not None else None
