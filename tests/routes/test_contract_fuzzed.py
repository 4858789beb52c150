"""Schemathesis against the real `dubbing serve` process, with every check it has: generated requests for every
operation in `/openapi.json` (a real job's id and stream ticket for the per-job routes, so they are not all 404)
get no server error; every answer matches the documented status codes, content types and schemas; what the
document calls valid is accepted and what it calls invalid refused; a 405 names the methods in `Allow`."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path

from service.sample import make_sample
from tests.support import served

REPO = Path(__file__).resolve().parents[2]
CHECKS = "all"

# A declared size over the limit is refused as too large (413), not as malformed. Refusals no schema can
# foresee are allowed on the operations that make them: a job names objects that must be the caller's own
# uploads, in a language pair installed here (422); a signed storage URL's token is a signature, and Supabase
# Storage's wire format (which the local routes speak) answers a bad one with 400. An edit of a job's transcript or
# of a language is refused for what the document cannot say: no If-Match (428), someone edited first (412), the
# job is rendering or has no transcript yet (409), a time inside another segment (422).
SEMANTIC_REFUSALS = """
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]

[[operations]]
include-path-regex = "^/v1/jobs/[^/]+/(transcript|languages)"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "412", "422", "428"]

[[operations]]
include-path = "/v1/jobs"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422"]

[[operations]]
include-path-regex = "^/storage/"
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "400", "403", "404", "409", "413", "416"]
"""


def schemathesis_command() -> str:
    found = Path(sys.executable).parent / "st"
    return str(found) if found.exists() else (shutil.which("st") or "st")


async def test_generated_requests_get_no_5xx_and_documented_answers(tmp_path: Path, database_url: str) -> None:
    sample = make_sample(tmp_path / "sample")
    async with served(tmp_path / "data", database_url) as svc:
        voice = await svc.upload("fuzz", sample.voice, "voice")
        created = await svc.client.post("/v1/jobs", headers=svc.auth("fuzz"), json={
            "voice_object": voice, "source_language": "en", "target_languages": ["es"]})
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        ticket = (await svc.client.post(f"/v1/jobs/{job_id}/events/ticket", headers=svc.auth("fuzz"))).json()
        token = svc.auth("fuzz")["Authorization"]
        config = tmp_path / "schemathesis.toml"
        config.write_text(
            f'headers = {{ Authorization = "{token}" }}\n'
            "[generation]\nmax-examples = 30\n"
            f'[parameters]\n"path.job_id" = "{job_id}"\n"query.ticket" = "{ticket["path"].split("ticket=")[1]}"\n'
            + SEMANTIC_REFUSALS
        )
        process = await asyncio.create_subprocess_exec(
            schemathesis_command(), "--config-file", str(config), "run", f"{svc.base_url}/openapi.json",
            "--checks", CHECKS, "--phases", "examples,coverage,fuzzing", "--seed", "7",
            env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.routes.schemathesis_hooks", "PYTHONPATH": str(REPO)},
            cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        output, _ = await asyncio.wait_for(process.communicate(), 300)
        report = output.decode(errors="replace")
        assert process.returncode == 0, report[-8000:]
        assert "passed" in report
