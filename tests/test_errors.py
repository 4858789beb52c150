"""The error codes and classes: one enum with its retryable table, every exception class in `service.errors`,
the API's error body as before, and no web framework in the module the process pool loads."""

from __future__ import annotations

import ast
import json
import pickle
import subprocess
import sys
from pathlib import Path

import service
from service.errors import (
    RETRYABLE,
    AudioError,
    EngineError,
    ErrorCode,
    IdempotencyConflict,
    QueueUnavailable,
    StageError,
    StorageError,
)
from service.routes.errors import error_response

SERVICE = Path(service.__file__).parent


def test_errors_and_the_pool_load_without_the_web_framework() -> None:
    code = ("import sys, service.errors, service.workpool.cpu_pool, service.audio.ffmpeg; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'starlette'))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_every_exception_class_lives_in_errors() -> None:
    outside = []
    for path in SERVICE.rglob("*.py"):
        if path == SERVICE / "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(base, ast.Name) and (base.id.endswith(("Error", "Exception")) or base.id == "Exception")
                for base in node.bases
            ):
                outside.append(f"{path.relative_to(SERVICE)}:{node.name}")
    assert outside == []


def _code_literals(tree: ast.AST, codes: set[str]) -> list[ast.Constant]:
    """String constants equal to one of our codes where a code goes: a call's argument or a comparison."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            candidates = [*node.args, *(k.value for k in node.keywords)]
        elif isinstance(node, ast.Compare):
            candidates = [node.left, *node.comparators]
        else:
            continue
        found += [c for c in candidates if isinstance(c, ast.Constant) and c.value in codes]
    return found


# A provider's own status words that happen to equal one of ours: read from its answers, never sent as ours.
PROVIDER_WORDS = {"engines/cloud/elevenlabs.py": {"quota_exceeded"}}


def test_no_code_of_ours_is_spelled_as_a_string_outside_the_enum() -> None:
    codes = {c.value for c in ErrorCode}
    spelled = [f"{path.relative_to(SERVICE)}:{node.lineno}:{node.value}"
               for path in SERVICE.rglob("*.py") if path != SERVICE / "errors.py"
               for node in _code_literals(ast.parse(path.read_text()), codes)
               if node.value not in PROVIDER_WORDS.get(str(path.relative_to(SERVICE)), set())]
    assert spelled == []


def test_retryability_follows_the_table() -> None:
    assert EngineError(ErrorCode.ENGINE_TIMEOUT, "slow").retryable
    assert EngineError(ErrorCode.PROVIDER_UNAVAILABLE, "down").retryable
    assert not EngineError(ErrorCode.UNSUPPORTED_LANGUAGE, "no voice").retryable
    assert AudioError(ErrorCode.FFMPEG_FAILED, "exit 1").retryable
    assert not AudioError(ErrorCode.AUDIO_UNDECODABLE, "noise").retryable
    assert not StageError(ErrorCode.INPUT_CHANGED, "changed").retryable
    assert QueueUnavailable("redis is down").retryable
    assert not IdempotencyConflict().retryable
    # An error that knows better says so; storage decides by the status it met, whatever the code.
    assert not EngineError(ErrorCode.PROVIDER_UNAVAILABLE, "given up", retryable=False).retryable
    assert StorageError(503, "NoSuchKey", "busy").retryable and not StorageError(404, "NoSuchKey", "gone").retryable
    assert RETRYABLE <= set(ErrorCode)


def test_a_code_reads_and_travels_as_its_value() -> None:
    error = EngineError(ErrorCode.ENGINE_FAILED, "espeak-ng exited 1")
    assert error.code == "engine_failed" and str(error) == "engine_failed: espeak-ng exited 1"
    again = pickle.loads(pickle.dumps(error))  # across the process pool
    assert (again.code, again.message, again.retryable) == (ErrorCode.ENGINE_FAILED, error.message, False)
    assert json.dumps({"code": ErrorCode.NOT_FOUND}) == '{"code": "not_found"}'


def test_the_error_body_is_unchanged_on_the_wire() -> None:
    response = error_response(404, ErrorCode.NOT_FOUND, "Job not found")
    assert response.body == b'{"error":{"code":"not_found","message":"Job not found"}}'
