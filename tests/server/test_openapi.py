"""The OpenAPI document of /api/v1: a valid OpenAPI 3.1 document (openapi-spec-validator), describing
exactly the routes the app has (a route cannot be added, or removed, without the document saying so),
with each route's roles as its @access declares them, and served as it is built."""

from __future__ import annotations

from typing import Any

from openapi_spec_validator import validate

from edgeface.server.openapi import document

from .test_api import api_routes


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = document()
    assert doc["openapi"].startswith("3.1.")
    validate(doc)  # raises with the offending path


def test_the_document_describes_exactly_the_apps_routes(app: Any) -> None:
    doc = document()
    documented = {f"{m.upper()} {path}" for path, ops in doc["paths"].items() for m in ops}
    served = {key for key, _, _ in api_routes(app)}
    assert documented == served, {"undocumented": served - documented, "not served": documented - served}


def test_each_operation_names_its_routes_roles_and_every_refusal(app: Any) -> None:
    doc = document()
    for key, _, acc in api_routes(app):
        method, path = key.split(" ", 1)
        operation = doc["paths"][path][method.lower()]
        assert set(operation["x-edgeface-roles"]) == set(acc.roles), key
        if acc.roles:  # every authenticated route: the bearer scheme applies, 401/403/429 documented
            assert "security" not in operation and doc["security"] == [{"bearerAuth": []}], key
            assert {"401", "403", "429"} <= set(operation["responses"]), key
        else:
            assert operation["security"] == [], key
        params = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
        assert params == {seg[1:-1] for seg in path.split("/") if seg.startswith("{")}, key


def test_the_served_document_is_the_built_one(app: Any) -> None:
    r = app.test_client().get("/api/v1/openapi.json")
    assert r.status_code == 200 and r.get_json() == document()
    assert doc_security_scheme(r.get_json()) == {"type": "http", "scheme": "bearer"}


def doc_security_scheme(doc: dict[str, Any]) -> dict[str, Any]:
    scheme = doc["components"]["securitySchemes"]["bearerAuth"]
    return {k: scheme[k] for k in ("type", "scheme")}
