"""The OpenAPI 3.1 document of the JSON API (``/api/v1/openapi.json``), built here as a dict.

Kept in Python beside the routes so one change touches both; the tests hold them together: the document
validates (openapi-spec-validator), its paths and methods are exactly the app's ``/api/v1`` rules, each
operation's ``x-edgeface-roles`` are the route's ``@access`` roles, and real responses validate against
the schemas documented for their status.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from .openapi_schemas import ERRORS, INT, OBJ, SCHEMAS, N, S, arr, obj, ref
from .review_query import STATUSES

VERSION = "1.0.0"


def _path(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": S, "description": description}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def op(
    summary: str,
    roles: tuple[str, ...],
    ok: int,
    schema: str | None,
    *,
    errors: tuple[int, ...] = (),
    params: tuple[dict[str, Any], ...] = (),
    body: dict[str, Any] | None = None,
    media: str | None = None,
) -> dict[str, Any]:
    """One operation: its roles (``x-edgeface-roles``), parameters, body and every documented response."""
    out: dict[str, Any] = {
        "summary": summary,
        "x-edgeface-roles": list(roles),
        "description": f"Roles: {' or '.join(roles)}.",
        "responses": {},
    }
    if params:
        out["parameters"] = list(params)
    if body is not None:
        out["requestBody"] = {"required": True, "content": body}
    if media:
        out["responses"][str(ok)] = {
            "description": "OK",
            "content": {media: {"schema": {"type": "string", "contentMediaType": media}}},
        }
    else:
        out["responses"][str(ok)] = {"description": "OK", **_json(ref(schema or "Error"))}
    for code in sorted({401, 403, 429, *errors}):
        out["responses"][str(code)] = {"$ref": f"#/components/responses/E{code}"}
    return out


RID = _path("rid", "A result's id.")
R, A, RA = ("reviewer",), ("admin",), ("reviewer", "admin")
RESULT_FILTERS = (
    _query("status", {"enum": ["", "all", *STATUSES]}, "Review status (default pending; all: any)."),
    _query("decision", {"enum": ["", "all", "match", "no_match", "refused"]}, "The unit's decision (default match)."),
    _query("device", S, "One device's results."),
    _query("date_from", {**S, "format": "date"}, "Captured on or after this day (YYYY-MM-DD, UTC)."),
    _query("date_to", {**S, "format": "date"}, "Captured on or before this day."),
    _query("min_score", N, "Top score at least."),
    _query("max_score", N, "Top score at most."),
    _query("identity", S, "Top candidate or confirmed identity whose id or name contains this."),
    _query("page", {**INT, "minimum": 1}, "1 (default) and up."),
    _query("per_page", {**INT, "minimum": 1, "maximum": 200}, "Default 50."),
)


def _paths() -> dict[str, Any]:
    multipart_photo = {
        "multipart/form-data": {
            "schema": obj(
                {
                    "photo": {**S, "contentMediaType": "image/*"},
                    "result": {**S, "description": "Search with this stored result's face crop instead."},
                },
                required=[],
            )
        }
    }
    multipart_images = {
        "multipart/form-data": {
            "schema": obj(
                {
                    "images": arr({**S, "contentMediaType": "image/*"}),
                    "source": {**S, "description": "Where the images come from."},
                    "consent": {**S, "description": "Consent or legal basis."},
                    "name": {**S, "description": "The person's name (default: the identity id)."},
                },
                required=["images", "source", "consent"],
            )
        }
    }
    return {
        "/api/v1/openapi.json": {
            "get": {
                "summary": "This document",
                "description": "Public: it describes the routes, never what they hold.",
                "security": [],
                "x-edgeface-roles": [],
                "responses": {"200": {"description": "OK", **_json(OBJ)}},
            }
        },
        "/api/v1/results": {
            "get": op(
                "Results with the review queue's filters, newest received first",
                R,
                200,
                "ResultPage",
                errors=(400,),
                params=RESULT_FILTERS,
            )
        },
        "/api/v1/results/pending-count": {
            "get": op("Pending matches and results awaiting a second confirmation", R, 200, "PendingCount")
        },
        "/api/v1/results/{rid}": {
            "get": op(
                "Result with candidates, scores and review history",
                R,
                200,
                "ResultDetail",
                errors=(404,),
                params=(RID,),
            )
        },
        "/api/v1/results/{rid}/crop.jpg": {
            "get": op("The face crop the unit sent", R, 200, None, errors=(404,), params=(RID,), media="image/jpeg")
        },
        "/api/v1/results/{rid}/decisions": {
            "post": op(
                "Decision on a result (two-person rule and audit as on the review page)",
                R,
                201,
                "DecisionOutcome",
                errors=(400, 404, 409),
                params=(RID,),
                body=_json(ref("DecisionRequest"))["content"],
            )
        },
        "/api/v1/results/{rid}/gallery-image": {
            "post": op(
                "Add a confirmed result's probe to the person's gallery images",
                A,
                201,
                "Learnt",
                errors=(400, 404, 409, 422),
                params=(RID,),
                body=_json(ref("LearnRequest"))["content"],
            )
        },
        "/api/v1/cases": {"get": op("Every case tag results carry", R, 200, "CaseList")},
        "/api/v1/cases/{tag}": {
            "get": op(
                "Every result of one case",
                R,
                200,
                "CaseDetail",
                errors=(404,),
                params=(_path("tag", "The case/body tag (may contain '/')."),),
            )
        },
        "/api/v1/audit": {
            "get": op(
                "Audit entries, newest first, and the chain's verification",
                RA,
                200,
                "AuditExport",
                errors=(400,),
                params=(
                    _query("limit", {**INT, "minimum": 1, "maximum": 1000}, "Entries (default 200)."),
                    _query("before", INT, "Only entries older than this seq."),
                    _query("action", S, "Only actions starting with this, e.g. review."),
                ),
            )
        },
        "/api/v1/devices": {
            "get": op("The fleet: each device's state and gallery version", RA, 200, "DeviceList"),
            "post": op(
                "Issue a device's bundle-download token (shown once)",
                A,
                201,
                "DeviceCredential",
                errors=(400,),
                body=_json(ref("DeviceCredentialRequest"))["content"],
            ),
        },
        "/api/v1/devices/{device_id}/revoke": {
            "post": op(
                "Revoke a device (downloads, signed command, broker account)",
                A,
                200,
                "RevokeOutcome",
                errors=(400,),
                params=(_path("device_id", "The unit's id."),),
            )
        },
        "/api/v1/search": {
            "post": op(
                "Search by photo in the current gallery (audited)",
                RA,
                200,
                "SearchOutcome",
                errors=(400, 404, 409, 413, 422),
                body=multipart_photo,
            )
        },
        "/api/v1/identities": {
            "get": op(
                "Identities by id or name, enrolled and pending",
                RA,
                200,
                "IdentityList",
                errors=(400,),
                params=(
                    _query("q", S, "Part of an id or name (any case)."),
                    _query("limit", {**INT, "minimum": 1, "maximum": 100}, "Default 20."),
                ),
            )
        },
        "/api/v1/identities/{ident}": {
            "get": op(
                "An identity and every stored image's provenance",
                A,
                200,
                "IdentityDetail",
                errors=(404,),
                params=(_path("ident", "The identity id."),),
            )
        },
        "/api/v1/identities/{ident}/images": {
            "post": op(
                "Enroll images through the quality gate",
                A,
                201,
                "EnrollReport",
                errors=(400, 413, 422),
                params=(_path("ident", "The identity id (created if new)."),),
                body=multipart_images,
            )
        },
        "/api/v1/images/{image_id}": {
            "get": op(
                "A stored image's bytes (audited)",
                A,
                200,
                None,
                errors=(404,),
                params=({**_path("image_id", "The image's id."), "schema": INT},),
                media="image/*",
            )
        },
        "/api/v1/publish": {
            "post": op(
                "Build, sign, publish and announce the next gallery version", A, 201, "Publication", errors=(409,)
            )
        },
        "/api/v1/publications": {"get": op("The newest publications with their bundles", A, 200, "PublicationList")},
    }


def _tagged(paths: dict[str, Any]) -> dict[str, Any]:
    """Each operation tagged with its path's first segment (results, cases, devices, ...), for grouping."""
    for path, ops in paths.items():
        for operation in ops.values():
            operation["tags"] = [path.split("/")[3].split(".")[0]]
    return paths


@cache
def _document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "edgeface central server API",
            "version": VERSION,
            "description": "Results, decisions, identities, enrollment, publishing, devices, search by photo and the "
            "audit log of an edgeface server. Authenticate with a per-user token (create one on /account): "
            "'Authorization: Bearer <token>'. A token holds its user's roles, narrowed if it was created so. "
            "Errors are JSON {error, detail}.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "paths": _tagged(_paths()),
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "A user's API token (efk_...)."}
            },
            "schemas": SCHEMAS,
            "responses": {f"E{code}": {"description": text, **_json(ref("Error"))} for code, text in ERRORS.items()},
        },
    }


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (a fresh copy: callers may change it)."""
    return copy.deepcopy(_document())
