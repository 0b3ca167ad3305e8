"""The component schemas and error responses of the JSON API's OpenAPI document (:mod:`.openapi`), as
JSON Schema 2020-12 (OpenAPI 3.1's dialect), with the small builders that keep them readable."""

from __future__ import annotations

from typing import Any

from .review_query import STATUSES

REF = "#/components/schemas/"
S = {"type": "string"}
N = {"type": "number"}
INT = {"type": "integer"}
B = {"type": "boolean"}
OBJ = {"type": "object"}


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF + name}


def opt(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` or null."""
    return {"anyOf": [schema, {"type": "null"}]}


def obj(props: dict[str, Any], *, required: list[str] | None = None, extra: bool = False) -> dict[str, Any]:
    """An object with these properties (all required unless ``required`` says which); ``extra``: others allowed."""
    return {
        "type": "object",
        "properties": props,
        "required": list(props) if required is None else required,
        "additionalProperties": extra,
    }


def arr(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


SUMMARY = {
    "id": {**S, "description": "The result's UUIDv7, given by the unit."},
    "device_id": S,
    "captured_at": {**S, "description": "Capture time on the unit (RFC 3339, UTC)."},
    "decision": {"enum": ["match", "no_match", "refused"]},
    "top_identity": opt(S),
    "top_name": opt(S),
    "top_score": opt(N),
    "review_status": {"enum": list(STATUSES)},
    "received_at": {**N, "description": "When the server stored it (Unix seconds)."},
}

SCHEMAS: dict[str, Any] = {
    "Error": obj(
        {
            "error": {**S, "description": "The HTTP status in words, e.g. unauthorized, forbidden, not_found."},
            "detail": {**S, "description": "What went wrong and what to do."},
        }
    ),
    "ResultSummary": obj(SUMMARY),
    "ResultPage": obj(
        {
            "results": arr(ref("ResultSummary")),
            "total": INT,
            "page": INT,
            "per_page": INT,
            "pages": INT,
            "filters": {**OBJ, "description": "The filters applied (defaults included)."},
        }
    ),
    "Candidate": obj(
        {"identity_id": S, "score": N, "normalised": N, "name": opt(S)},
        required=["identity_id", "score", "name"],
        extra=True,
    ),
    "Review": obj(
        {
            "reviewer": S,
            "verdict": {"enum": ["confirm", "reject", "unknown"]},
            "identity_id": opt(S),
            "comment": S,
            "created_at": N,
        }
    ),
    "ResultDetail": obj(
        {
            **SUMMARY,
            "candidates": arr(ref("Candidate")),
            "scores": obj(
                {
                    "space": {"enum": ["cosine", "normalised"]},
                    "threshold": opt(N),
                    "top_normalised": opt(N),
                    "frames_fused": opt(INT),
                }
            ),
            "has_crop": {**B, "description": "Whether GET .../crop.jpg has the face crop the unit sent."},
            "payload": {
                **OBJ,
                "description": "The result as the unit sent it (result.v1.json), without the crop's bytes.",
            },
            "reviews": arr(ref("Review")),
        }
    ),
    "DecisionRequest": obj(
        {
            "verdict": {"enum": ["confirm", "reject", "unknown"]},
            "identity": {**S, "description": "confirm: any identity id (default: the top candidate)."},
            "new_person": {
                **S,
                "description": "confirm as a new person with this name (an identity pending enrollment).",
            },
            "comment": S,
        },
        required=["verdict"],
    ),
    "DecisionOutcome": obj(
        {
            "result_id": S,
            "status": {"enum": list(STATUSES)},
            "identity": {**opt(S), "description": "The identity confirmed (a new person's generated id)."},
            "next_pending": {**opt(S), "description": "The pending match to review next (the page's decide-and-next)."},
        }
    ),
    "PendingCount": obj({"pending": INT, "awaiting_second": INT}),
    "CaseList": obj({"cases": arr(obj({"tag": S, "results": INT, "pending": INT, "last_captured": opt(S)}))}),
    "CaseDetail": obj(
        {
            "case": S,
            "results": arr(
                obj(
                    {
                        **SUMMARY,
                        "case_source": opt(S),
                        "location": opt(OBJ),
                        "source": opt(S),
                        "frames_fused": opt(INT),
                    }
                )
            ),
        }
    ),
    "AuditEntry": obj(
        {"seq": INT, "ts": N, "actor": S, "action": S, "subject": S, "details": OBJ, "prev_hash": S, "hash": S}
    ),
    "AuditExport": obj(
        {
            "entries": arr(ref("AuditEntry")),
            "verify": obj({"ok": B, "entries": INT, "head_seq": INT, "head_hash": S, "problems": arr(S)}),
            "next_before": {**opt(INT), "description": "Pass as ?before= for the next (older) page; null at the end."},
        }
    ),
    "Device": obj(
        {
            "device_id": S,
            "state": S,
            "gallery_version": opt(INT),
            "gallery_behind": B,
            "gallery_stale": opt(B),
            "last_seen": opt(N),
            "credential": {"enum": ["yes", "none", "revoked"]},
        },
        extra=True,
    ),
    "DeviceList": obj({"devices": arr(ref("Device")), "latest_gallery_version": opt(INT)}),
    "DeviceCredentialRequest": obj({"device_id": S}),
    "DeviceCredential": obj(
        {"device_id": S, "token": {**S, "description": "Shown once; the unit's gallery.sync_password."}}
    ),
    "RevokeOutcome": obj(
        {
            "device_id": S,
            "known": B,
            "command_sent": B,
            "command_why": opt(S),
            "broker_cut_off": B,
            "broker_why": opt(S),
        }
    ),
    "SearchOutcome": obj(
        {
            "sha256": {**S, "description": "Of the photo searched with (the photo is not kept)."},
            "gallery_version": INT,
            "embedder": S,
            "faces": arr(
                obj(
                    {
                        "box": arr(N),
                        "verdict": {"enum": ["match", "no_match", "refused"]},
                        "chip": {**S, "description": "data: URI of the aligned face (PNG)."},
                        "threshold": opt(N),
                        "space": S,
                        "candidates": arr(
                            obj(
                                {"identity": S, "name": opt(S), "score": N, "normalised": opt(N), "match": B, "chip": S}
                            )
                        ),
                        "refusal": S,
                    }
                )
            ),
        }
    ),
    "IdentityList": obj(
        {"identities": arr(obj({"id": S, "name": S, "status": {"enum": ["enrolled", "pending"]}, "images": INT}))}
    ),
    "Image": obj(
        {
            "id": INT,
            "sha256": S,
            "source": S,
            "consent": S,
            "enrolled_by": S,
            "enrolled_at": N,
            "status": S,
            "reasons": S,
            "result_id": {**opt(S), "description": "The confirmed result this probe came from (learning from review)."},
        }
    ),
    "IdentityDetail": obj(
        {"id": S, "name": S, "status": S, "created_at": N, "created_by": S, "images": arr(ref("Image"))}
    ),
    "EnrollReport": obj(
        {
            "identity": S,
            "report": arr(
                obj({"file": S, "sha256": S, "status": S, "reasons": arr(S), "duplicates": {"type": "array"}})
            ),
        }
    ),
    "Publication": obj(
        {
            "version": INT,
            "url": S,
            "count": INT,
            "identities": INT,
            "bytes": INT,
            "manifest_sha256": S,
            "announced": B,
            "embedders": arr(S),
            "bundles": arr(OBJ),
        },
        required=["version", "url", "count", "identities", "manifest_sha256", "announced", "embedders"],
        extra=True,
    ),
    "PublicationList": obj(
        {
            "publications": arr(
                obj(
                    {
                        "version": INT,
                        "published_at": N,
                        "published_by": S,
                        "count": INT,
                        "identities": INT,
                        "bytes": INT,
                        "manifest_sha256": S,
                        "announced": B,
                        "bundles": arr(OBJ),
                    }
                )
            )
        }
    ),
    "LearnRequest": obj({"legal_basis": {**S, "description": "Why this probe may be kept as an enrolled image."}}),
    "Learnt": obj(
        {
            "result_id": S,
            "identity_id": S,
            "status": {"enum": ["enrolled", "unchanged"]},
            "image_id": INT,
            "sha256": S,
            "source": S,
            "reasons": arr(S),
        },
        extra=True,
    ),
}

ERRORS = {
    400: "The request is malformed (the detail says which field).",
    401: "No token, or an unknown, revoked or expired one, or its user is deactivated.",
    403: "The token's roles do not include the route's.",
    404: "No such thing.",
    409: "Refused as things stand (the detail says why and what to do).",
    413: "An upload is too large (image.max_bytes, image.max_pixels).",
    422: "An upload cannot be used (not an image, or refused by the quality gate).",
    429: "Too many failed logins or unknown tokens from this address lately.",
}
