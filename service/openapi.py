"""The OpenAPI 3.1 document served at `/openapi.json`, written out by hand so it says exactly what we do."""

from __future__ import annotations

from typing import Any


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    text = {400: "Malformed request", 401: "Missing, bad or expired token", 404: "Not found (or not yours)",
            409: "Conflict", 413: "Too large", 415: "Unsupported content type", 422: "Invalid input"}
    return {str(s): _json(_ref("Error"), text[s]) for s in statuses}


_STR = {"type": "string"}
_NULLABLE_STR = {"type": ["string", "null"]}
_TIME = {"type": "string", "format": "date-time"}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "object", "required": ["code", "message"],
                                 "properties": {"code": _STR, "message": _STR}}},
    },
    "UploadRequest": {
        "type": "object",
        "required": ["files"],
        "properties": {"files": {"type": "array", "minItems": 1, "maxItems": 2, "items": {
            "type": "object", "required": ["kind", "filename", "content_type", "size_bytes"],
            "properties": {"kind": {"enum": ["voice", "background"]}, "filename": _STR,
                           "content_type": _STR, "size_bytes": {"type": "integer", "minimum": 1}}}}},
    },
    "UploadResponse": {
        "type": "object",
        "properties": {"uploads": {"type": "array", "items": {
            "type": "object",
            "properties": {"kind": _STR, "object_path": _STR, "expires_at": _TIME,
                           "upload_url": {"type": "string", "format": "uri",
                                          "description": "PUT the raw bytes with their Content-Type "
                                                         "(or multipart with one file part)."}}}}},
    },
    "JobRequest": {
        "type": "object",
        "required": ["voice_object", "source_language", "target_languages"],
        "properties": {
            "voice_object": _STR,
            "background_object": _NULLABLE_STR,
            "source_language": {"type": "string", "description": "ISO 639-1 code, or 'auto'"},
            "target_languages": {"type": "array", "minItems": 1, "items": _STR},
            "idempotency_key": _NULLABLE_STR,
        },
    },
    "Input": {
        "type": ["object", "null"],
        "properties": {"object_path": _STR, "content_type": _STR, "size_bytes": {"type": "integer"},
                       "sha256": _STR, "duration_seconds": {"type": "number"}},
    },
    "Task": {
        "type": "object",
        "properties": {
            "id": _STR, "target_language": _STR,
            "stage": {"enum": ["queued", "stt", "translating", "dubbing", "mixing", "exporting", "complete",
                               "failed", "cancelled"]},
            "progress": {"type": "number", "minimum": 0, "maximum": 1},
            "attempts": {"type": "integer"},
            "error": {"type": ["object", "null"], "properties": {"code": _STR, "message": _STR}},
        },
    },
    "Artifact": {
        "type": "object",
        "properties": {
            "id": _STR,
            "kind": {"enum": ["master_wav", "master_web", "voice_stem", "captions_srt", "captions_vtt",
                              "manifest", "transcript_json", "transcript_srt", "transcript_vtt"]},
            "target_language": _NULLABLE_STR, "content_type": _STR, "size_bytes": {"type": "integer"},
            "sha256": _STR, "created_at": _TIME, "expires_at": _TIME,
            "download_url": {"type": "string", "format": "uri"},
        },
    },
    "Job": {
        "type": "object",
        "properties": {
            "id": _STR,
            "status": {"enum": ["queued", "running", "complete", "partial", "failed", "cancelled"]},
            "source_language": _STR, "created_at": _TIME, "updated_at": _TIME,
            "inputs": {"type": "object", "properties": {"voice": _ref("Input"), "background": _ref("Input")}},
            "tasks": {"type": "array", "items": _ref("Task")},
            "artifacts": {"type": "array", "items": _ref("Artifact")},
        },
    },
}


def openapi_document(server_url: str) -> dict[str, Any]:
    job_id = [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}]
    auth: list[dict[str, list[str]]] = [{"bearer": []}]
    return {
        "openapi": "3.1.0",
        "info": {"title": "Dubbing API", "version": "1"},
        "servers": [{"url": server_url}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": SCHEMAS,
        },
        "paths": {
            "/healthz": {"get": {"summary": "The process is up", "responses": {"200": {"description": "up"}}}},
            "/readyz": {"get": {"summary": "Database reachable, migrations applied, supervisor running",
                                "responses": {"200": {"description": "ready"}, "503": {"description": "not"}}}},
            "/v1/uploads": {"post": {
                "summary": "Signed upload URLs for the files the client will upload", "security": auth,
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("UploadRequest")}}},
                "responses": {"201": _json(_ref("UploadResponse"), "One signed URL per file"),
                              **_errors(400, 401, 413, 415, 422)}}},
            "/v1/jobs": {
                "post": {
                    "summary": "Create a job from uploaded objects (the metadata notify)", "security": auth,
                    "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("JobRequest")}}},
                    "responses": {"201": _json(_ref("Job"), "Created"),
                                  "200": _json(_ref("Job"), "Idempotent repeat"),
                                  **_errors(400, 401, 409, 413, 415, 422)}},
                "get": {
                    "summary": "The caller's jobs, newest first", "security": auth,
                    "parameters": [{"name": "limit", "in": "query", "schema": {"type": "integer"}},
                                   {"name": "cursor", "in": "query", "schema": {"type": "string"}}],
                    "responses": {"200": _json({"type": "object", "properties": {
                        "jobs": {"type": "array", "items": _ref("Job")}, "next_cursor": _NULLABLE_STR}}, "A page"),
                        **_errors(400, 401)}},
            },
            "/v1/jobs/{job_id}": {"get": {
                "summary": "A job with its tasks and artifacts", "security": auth, "parameters": job_id,
                "responses": {"200": _json(_ref("Job"), "The job"), **_errors(401, 404)}}},
            "/v1/jobs/{job_id}/artifacts": {"get": {
                "summary": "Artifacts with short-lived signed download URLs", "security": auth,
                "parameters": job_id,
                "responses": {"200": _json({"type": "object", "properties": {
                    "artifacts": {"type": "array", "items": _ref("Artifact")}}}, "Artifacts"),
                    **_errors(401, 404)}}},
            "/v1/jobs/{job_id}/cancel": {"post": {
                "summary": "Cancel every unfinished language task", "security": auth, "parameters": job_id,
                "responses": {"200": _json(_ref("Job"), "The job after cancelling"), **_errors(401, 404)}}},
            "/v1/jobs/{job_id}/events": {"get": {
                "summary": "Server-sent progress events (stage, progress, artifact, failed, done)",
                "description": "Each event's id is its sequence number in the job; reconnect with "
                               "Last-Event-ID to receive exactly what was missed. Ends after 'done'.",
                "security": auth, "parameters": job_id,
                "responses": {"200": {"description": "An event stream",
                                      "content": {"text/event-stream": {"schema": _STR}}},
                              **_errors(400, 401, 404)}}},
            "/storage/v1/object/upload/sign/{bucket}/{path}": {"put": {
                "summary": "Upload to a signed URL (local storage; Supabase Storage's wire format)",
                "parameters": [{"name": "token", "in": "query", "required": True, "schema": _STR}],
                "responses": {"200": {"description": '{"Key": "bucket/path"}'}}}},
            "/storage/v1/object/sign/{bucket}/{path}": {"get": {
                "summary": "Download from a signed URL (Range supported)",
                "parameters": [{"name": "token", "in": "query", "required": True, "schema": _STR}],
                "responses": {"200": {"description": "The bytes"}, "206": {"description": "A range"}}}},
        },
    }
