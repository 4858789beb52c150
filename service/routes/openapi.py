"""The OpenAPI 3.1 document served at `/openapi.json`.

Components are generated from the Structs in `routes/models.py` (the same ones that decode requests and
shape answers); this module only lists the paths and which model each one takes and returns.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

import msgspec

from service.domain import EventKind
from service.routes import models
from service.settings import ALLOWED_UPLOAD_TYPES

_STR = {"type": "string"}
_ERROR_TEXT = {400: "Malformed request", 401: "Missing, bad or expired token", 404: "Not found (or not yours)",
               409: "Conflict", 413: "Too large", 415: "Unsupported content type", 422: "Invalid input",
               412: "Someone edited first: the revision (If-Match) is stale; nothing was written",
               428: "If-Match is required",
               416: "Range not satisfiable", 403: "Only from this computer", 503: "Try again later"}


def _ref(model: type[msgspec.Struct]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(model: type[msgspec.Struct], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): _json(models.Error, _ERROR_TEXT[s]) for s in statuses}


def _storage_errors(*statuses: int) -> dict[str, Any]:
    return {str(s): _json(models.StorageError, _ERROR_TEXT.get(s, "Refused")) for s in statuses}


def _stream() -> dict[str, Any]:
    """Server-sent events, each described as an event record (as OpenAPI 3.2's `itemSchema` does)."""
    event = {
        "type": "object", "required": ["data"],
        "properties": {
            "event": {"enum": [kind.value for kind in EventKind]},
            "id": {"type": "string", "description": "the event's sequence number in the job (Last-Event-ID)"},
            "retry": {"type": "integer"},
            "data": {"type": "string", "contentMediaType": "application/json",
                     "contentSchema": _ref(models.ProgressEvent)},
        },
    }
    return {"description": "Server-sent events", "content": {"text/event-stream": {"schema": event}}}


def _body(model: type[msgspec.Struct]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(model)}}}


@cache
def components() -> dict[str, Any]:
    _, schemas = msgspec.json.schema_components([*models.REQUESTS, *models.RESPONSES],
                                                ref_template="#/components/schemas/{name}")
    return schemas


def _with_limits(max_upload_bytes: int | None, max_target_languages: int | None) -> dict[str, Any]:
    """The components with this service's configured limits, which the API enforces as well."""
    schemas = copy.deepcopy(components())
    if max_upload_bytes is not None:
        schemas["UploadFile"]["properties"]["size_bytes"]["maximum"] = max_upload_bytes
    if max_target_languages is not None:
        schemas["JobRequest"]["properties"]["target_languages"]["maxItems"] = max_target_languages
    return schemas


def _signed_upload_body() -> dict[str, Any]:
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {"required": True, "description": "The file with its own audio Content-Type (or multipart/form-data with "
                                             "one file part), exactly the size declared when the URL was made",
            "content": {kind: binary for kind in ALLOWED_UPLOAD_TYPES}}


def _signed_upload(object_path: list[dict[str, Any]], token: list[dict[str, Any]], method: str) -> dict[str, Any]:
    return {
        "summary": "Upload to a signed URL, once (local storage; Supabase Storage's wire format, PUT or POST)",
        "operationId": f"{method}SignedUpload",
        "parameters": [*object_path, *token],
        "requestBody": _signed_upload_body(),
        "responses": {"200": _json(models.StorageKey, "Stored"), **_storage_errors(400, 403, 404, 409, 413, 415)}}


def _editing_paths(job_id: list[dict[str, Any]], auth: list[dict[str, list[str]]]) -> dict[str, Any]:
    """The routes of editing a dub: the transcript, each language, renders, adding languages."""
    segment = [*job_id, {"name": "segment_id", "in": "path", "required": True,
                         "schema": {"type": "string", "pattern": "^[0-9]{1,9}$"}}]
    language = [*job_id, {"name": "language", "in": "path", "required": True, "schema": _STR}]
    lang_segment = [*language, segment[-1]]
    match = {"name": "If-Match", "in": "header", "required": False,
             "description": "The revision you edited (the ETag, e.g. \"3\"); without it the answer is 428",
             "schema": {"type": "string", "pattern": '^(\\*|\\s*(W/)?"?[0-9]{1,9}"?\\s*)$'}}
    optional_match = {**match, "description": "The revision you edited (the ETag); checked when sent"}
    transcript = _json(models.EditableTranscript, "The transcript after the change (ETag: its revision)")
    language_doc = _json(models.LanguageResource, "The language (ETag: its revision)")
    edit_errors = _errors(400, 401, 404, 409, 412, 422, 428)
    return {
        "/v1/jobs/{job_id}/transcript": {"get": {
            "summary": "The source transcript as people edit it: segments with timing, speaker and text",
            "security": auth, "parameters": job_id,
            "responses": {"200": _json(models.EditableTranscript, "The transcript (ETag: its revision)"),
                          **_errors(401, 404, 409)}}},
        "/v1/jobs/{job_id}/transcript/segments/{segment_id}": {"patch": {
            "summary": "Change a segment's text, start, end or speaker (409 while the job renders)",
            "security": auth, "parameters": [*segment, match], "requestBody": _body(models.SegmentPatch),
            "responses": {"200": transcript, **edit_errors}}},
        "/v1/jobs/{job_id}/transcript/segments/{segment_id}/split": {"post": {
            "summary": "Cut a segment in two at a time", "security": auth, "parameters": [*segment, match],
            "requestBody": _body(models.SegmentSplit), "responses": {"200": transcript, **edit_errors}}},
        "/v1/jobs/{job_id}/transcript/segments/{segment_id}/merge": {"post": {
            "summary": "Join a segment with the one after it", "security": auth, "parameters": [*segment, match],
            "responses": {"200": transcript, **edit_errors}}},
        "/v1/jobs/{job_id}/transcript/segments/{segment_id}/history": {"get": {
            "summary": "Every edit of a segment, source and translations: who, when, old and new",
            "security": auth, "parameters": segment,
            "responses": {"200": _json(models.SegmentHistory, "The edits, oldest first"), **_errors(401, 404)}}},
        "/v1/jobs/{job_id}/languages": {"post": {
            "summary": "Dub the job into more languages from its transcript (no speech recognition again)",
            "security": auth, "parameters": job_id, "requestBody": _body(models.AddLanguages),
            "responses": {"202": _json(models.LanguagesAdded, "Queued; follow the progress stream"),
                          **_errors(400, 401, 404, 409, 422)}}},
        "/v1/jobs/{job_id}/languages/{language}": {"get": {
            "summary": "A language of the job: its segments' texts, which are hand-edited and which are stale",
            "security": auth, "parameters": language,
            "responses": {"200": language_doc, **_errors(401, 404)}}},
        "/v1/jobs/{job_id}/languages/{language}/segments/{segment_id}": {"patch": {
            "summary": "Edit a segment's translation by hand (kept across renders until its source changes)",
            "security": auth, "parameters": [*lang_segment, optional_match],
            "requestBody": _body(models.TranslationPatch), "responses": {"200": language_doc, **edit_errors}}},
        "/v1/jobs/{job_id}/languages/{language}/captions": {"put": {
            "summary": "Send the language's captions back edited (SRT or WebVTT): changed cue texts become edits",
            "description": "Cue count and timing must be those of the latest captions; 422 names the first cue "
                           "that differs.",
            "security": auth, "parameters": [*language, optional_match],
            "requestBody": {"required": True, "content": {t: {"schema": _STR} for t in (
                "application/x-subrip", "text/vtt", "text/plain")}},
            "responses": {"200": _json(models.CaptionsApplied, "What changed"), **_errors(401, 404, 409, 412, 413,
                                                                                          422)}}},
        "/v1/jobs/{job_id}/languages/{language}/render": {"post": {
            "summary": "Render the language again: only what changed is translated and spoken again",
            "description": "A render asked for while one runs is that render; follow it on the job's progress "
                           "stream from `after_event`.",
            "security": auth, "parameters": language,
            "responses": {"202": _json(models.RenderStarted, "Under way (or nothing to do)"),
                          **_errors(401, 404, 409)}}},
    }


def openapi_document(server_url: str, local_auth: bool = False, max_upload_bytes: int | None = None,
                     max_target_languages: int | None = None) -> dict[str, Any]:
    job_id = [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}]
    auth: list[dict[str, list[str]]] = [{"bearer": []}]
    token = [{"name": "token", "in": "query", "required": True,
              "schema": {"type": "string", "minLength": 1, "description": "The signed URL's own token"}}]
    object_path = [{"name": "bucket", "in": "path", "required": True, "schema": _STR},
                   {"name": "path", "in": "path", "required": True, "schema": _STR}]
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "Dubbing API", "version": "1"},
        "servers": [{"url": server_url}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": _with_limits(max_upload_bytes, max_target_languages),
        },
        "paths": {
            "/healthz": {"get": {"summary": "The process is up", "responses": {"200": {"description": "up"}}}},
            "/readyz": {"get": {"summary": "Database reachable, migrations applied, supervisor running",
                                "responses": {"200": {"description": "ready"}, "503": {"description": "not"}}}},
            "/metrics": {"get": {
                "summary": "Prometheus metrics of this process (Authorization: Bearer $METRICS_TOKEN; off without it)",
                "responses": {"200": {"description": "Prometheus text format",
                                      "content": {"text/plain": {"schema": _STR}}},
                              "401": {"description": "Missing or wrong token"},
                              "404": {"description": "METRICS_TOKEN is not set"}}}},
            "/v1/languages": {"get": {
                "summary": "What the installed engines can dub: sources, their targets, language detection",
                "security": auth, "responses": {"200": _json(models.LanguageCatalog, "The catalog"),
                                                **_errors(401, 503)}}},
            "/v1/uploads": {"post": {
                "summary": "Signed upload URLs for the files the client will upload", "security": auth,
                "requestBody": _body(models.UploadRequest),
                "responses": {"201": _json(models.UploadResponse, "One signed URL per file"),
                              **_errors(400, 401, 413, 415, 422)}}},
            "/v1/jobs": {
                "post": {
                    "summary": "Create a job from uploaded objects (the metadata notify)", "security": auth,
                    "requestBody": _body(models.JobRequest),
                    "responses": {"201": _json(models.Job, "Created"), "200": _json(models.Job, "Idempotent repeat"),
                                  **_errors(400, 401, 409, 413, 415, 422, 503)}},
                "get": {
                    "summary": "The caller's jobs, newest first", "security": auth,
                    "parameters": [
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
                        {"name": "cursor", "in": "query", "description": "next_cursor of the page before",
                         "schema": {"type": "string", "pattern": models.CURSOR}}],
                    "responses": {"200": _json(models.JobPage, "A page"), **_errors(400, 401)}},
            },
            "/v1/jobs/{job_id}": {
                "get": {
                    "summary": "A job with its tasks and artifacts", "security": auth, "parameters": job_id,
                    "responses": {"200": _json(models.Job, "The job"), **_errors(401, 404)}},
                "delete": {
                    "summary": "Delete the job and all its files now (running languages are cancelled first)",
                    "description": "Artifacts, inputs (unless another of your jobs uses the same upload) and "
                                   "intermediate files are deleted; afterwards the job is not found.",
                    "security": auth, "parameters": job_id,
                    "responses": {"200": _json(models.JobDeletion, "What was deleted"), **_errors(401, 404)}},
            },
            "/v1/jobs/{job_id}/artifacts": {"get": {
                "summary": "Artifacts with short-lived signed download URLs (each language's latest revision, or "
                           "revision N's)", "security": auth,
                "parameters": [*job_id, {"name": "revision", "in": "query", "required": False,
                                         "schema": {"type": "integer", "minimum": 1}}],
                "responses": {"200": _json(models.ArtifactList, "Artifacts"), **_errors(400, 401, 404)}}},
            "/v1/jobs/{job_id}/inputs": {"get": {
                "summary": "The job's voice and background with short-lived signed download URLs",
                "security": auth, "parameters": job_id,
                "responses": {"200": _json(models.InputList, "Inputs"), **_errors(401, 404)}}},
            "/v1/jobs/{job_id}/events/ticket": {"post": {
                "summary": "A short-lived URL of the progress stream, for EventSource (which cannot send a token)",
                "security": auth, "parameters": job_id,
                "responses": {"200": _json(models.StreamTicket, "The stream's URL"), **_errors(401, 404)}}},
            "/v1/jobs/{job_id}/events/stream": {"get": {
                "summary": "The progress stream, opened with a ticket instead of a token",
                "parameters": [*job_id, {"name": "ticket", "in": "query", "required": True, "schema": _STR}],
                "responses": {"200": _stream(), **_errors(400, 401, 404, 503)}}},
            "/v1/jobs/{job_id}/cancel": {"post": {
                "summary": "Cancel every unfinished language task", "security": auth, "parameters": job_id,
                "responses": {"200": _json(models.Job, "The job after cancelling"), **_errors(401, 404)}}},
            "/v1/jobs/{job_id}/events": {"get": {
                "summary": "Server-sent progress events (stage, progress, artifact, failed, done)",
                "description": "Each event's id is its sequence number in the job; reconnect with "
                               "Last-Event-ID to receive exactly what was missed. Ends after 'done'.",
                "security": auth, "parameters": job_id,
                "responses": {"200": _stream(), **_errors(400, 401, 404, 503)}}},
            **_editing_paths(job_id, auth),
            "/storage/v1/object/upload/sign/{bucket}/{path}": {"put": _signed_upload(object_path, token, "put"),
                                                                "post": _signed_upload(object_path, token, "post")},
            "/storage/v1/object/sign/{bucket}/{path}": {"get": {
                "summary": "Download from a signed URL (Range supported)",
                "parameters": [*object_path, *token],
                "responses": {"200": {"description": "The bytes"}, "206": {"description": "A range"},
                              "304": {"description": "Not modified"}, **_storage_errors(400, 403, 404, 416)}}},
        },
    }
    if local_auth:  # the route exists only in local mode
        document["paths"]["/local/token"] = {"post": {
            "summary": "A local access token for a user name (local mode, from this computer only)",
            "requestBody": _body(models.LocalTokenRequest),
            "responses": {"200": _json(models.LocalToken, "A token"), **_errors(400, 403, 422)}}}
    return document
