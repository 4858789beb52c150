"""The OpenAPI document is served in every mode, the local one (no Supabase settings: the default) included."""

from __future__ import annotations

from service.routes.openapi import openapi_document


def test_local_mode_documents_its_sign_in_route() -> None:
    document = openapi_document("http://127.0.0.1:8000", local_auth=True)
    responses = document["paths"]["/local/token"]["post"]["responses"]
    assert {"200", "400", "403", "422"} <= set(responses)


def test_cloud_mode_has_no_local_sign_in() -> None:
    assert "/local/token" not in openapi_document("https://api.example.com", local_auth=False)["paths"]
