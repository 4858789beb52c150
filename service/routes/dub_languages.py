"""`/v1/jobs/{id}/languages`: each language of a job as people edit it (its segments' texts, an edited SRT or
WebVTT), rendering it again (only what changed is redone), and adding languages to a finished job."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from service import languages
from service.db import segments, translations
from service.db.jobs import StoredJob
from service.errors import ApiError, EditRefused, ErrorCode
from service.routes import models
from service.routes.errors import not_found, unprocessable
from service.routes.jobs import target_codes
from service.routes.models import AddLanguages, TranslationPatch, read_body, respond
from service.routes.services import services
from service.routes.transcript import etag, if_match, owned_job, segment_id
from service.stages import proofread

MAX_CAPTIONS_BYTES = 2 * 1024 * 1024


def _language(request: Request) -> str:
    code = languages.normalize(request.path_params["language"])
    if code is None:
        raise not_found("The job has no such language")
    return code


async def _answer(request: Request, job: StoredJob, language: str, status_code: int = 200) -> Response:
    state = await translations.state(services(request).db.pool, job.id, language)
    if state is None:
        raise not_found("The job has no such language")
    response = respond(state.to_json(), models.LanguageResource, status_code)
    response.headers.update(etag(state.revision))
    return response


async def get_language(request: Request) -> Response:
    _, job = await owned_job(request)
    return await _answer(request, job, _language(request))


async def _known(request: Request, job: StoredJob, language: str) -> None:
    if await translations.state(services(request).db.pool, job.id, language) is None:
        raise not_found("The job has no such language")


async def patch_translation(request: Request) -> Response:
    user, job = await owned_job(request)
    language = _language(request)
    wanted = segment_id(request)
    expected = if_match(request, required=False)
    body = await read_body(request, TranslationPatch)
    state = await translations.state(services(request).db.pool, job.id, language)
    if state is None:
        raise not_found("The job has no such language")
    if all(s["id"] != wanted for s in state.segments):
        raise not_found("No such segment")
    await translations.edit_texts(services(request).db.pool, job.id, language, expected, user.id,
                                  {wanted: " ".join(body.text.split())}, "edit")
    return await _answer(request, job, language)


async def _body_text(request: Request) -> str:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_CAPTIONS_BYTES:
            raise ApiError(413, ErrorCode.BODY_TOO_LARGE, f"Captions larger than {MAX_CAPTIONS_BYTES} bytes")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise unprocessable(ErrorCode.INVALID_BODY, "Send the captions as UTF-8 text") from exc


async def put_captions(request: Request) -> Response:
    """An edited SRT or WebVTT of the language's latest captions: changed cue texts become hand edits of the
    segments they show; cue count and timing must be as rendered (422 names the first cue that is not)."""
    user, job = await owned_job(request)
    language = _language(request)
    expected = if_match(request, required=False)
    await _known(request, job, language)
    text = await _body_text(request)
    rendered = await translations.rendered_cues(services(request).db.pool, job.id, language)
    if rendered is None:
        raise EditRefused("The language has no captions yet: wait for its first render")
    _, records = rendered
    cues = proofread.parse(text)
    problem = proofread.mismatch(records, cues)
    if problem is not None:
        raise unprocessable(ErrorCode.CAPTIONS_MISMATCH, problem)
    changed_cues, texts = proofread.edited_texts(records, cues)
    revision, changed = await translations.edit_texts(services(request).db.pool, job.id, language, expected,
                                                      user.id, texts, "captions")
    response = respond({"revision": revision, "changed_cues": changed_cues, "changed_segments": changed},
                       models.CaptionsApplied)
    response.headers.update(etag(revision))
    return response


def _check_inputs(job: StoredJob) -> None:
    if job.inputs_deleted_at is not None:
        raise EditRefused("The job's recordings were deleted (retention): it cannot be rendered again")


async def render_language(request: Request) -> Response:
    _, job = await owned_job(request)
    language = _language(request)
    await _known(request, job, language)
    _check_inputs(job)
    svc = services(request)
    if await segments.load(svc.db.pool, job.id) is None:
        raise EditRefused("The job has no transcript to render from yet")
    started = await translations.start_render(svc.db.pool, job.id, language)
    if started.started:
        await svc.dispatch.job_created(job.id)
    state = await translations.state(svc.db.pool, job.id, language)
    assert state is not None
    return respond({"job_id": str(job.id), "target_language": language, "revision": state.revision,
                    "started": started.started, "after_event": started.after_seq}, models.RenderStarted, 202)


async def add_languages(request: Request) -> Response:
    """Dub the job into more languages from its transcript (no speech recognition again)."""
    _, job = await owned_job(request)
    body = await read_body(request, AddLanguages)
    svc = services(request)
    source = job.detected_language if job.source_language == languages.AUTO else job.source_language
    targets = target_codes(body.target_languages, source)
    if len(targets) > svc.settings.max_target_languages:
        raise unprocessable(ErrorCode.INVALID_FIELD,
                            f"'target_languages' may name at most {svc.settings.max_target_languages} languages")
    if source is not None and svc.language_check is not None and (problem := svc.language_check(source, targets)):
        raise unprocessable(ErrorCode.UNSUPPORTED_LANGUAGE, problem)
    _check_inputs(job)
    existing, after = await translations.add_languages(svc.db.pool, job.id, targets)
    if existing:
        raise ApiError(409, ErrorCode.LANGUAGE_EXISTS, f"The job already has {', '.join(existing)}")
    await svc.dispatch.job_created(job.id)
    return respond({"job_id": str(job.id), "target_languages": targets, "after_event": after},
                   models.LanguagesAdded, 202)
