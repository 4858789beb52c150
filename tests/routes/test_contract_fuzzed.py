"""Schemathesis against the real `dubbing serve` process: generated requests for every operation in
`/openapi.json` (a real job's id and stream ticket for the per-job routes, so they are not all 404)
get no server error, and every answer matches the documented status codes, content types and schemas."""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

from service.sample import make_sample
from tests.support import served

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


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
        )
        process = await asyncio.create_subprocess_exec(
            schemathesis_command(), "--config-file", str(config), "run", f"{svc.base_url}/openapi.json",
            "--checks", CHECKS, "--phases", "examples,coverage,fuzzing", "--seed", "7",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        output, _ = await asyncio.wait_for(process.communicate(), 300)
        report = output.decode(errors="replace")
        assert process.returncode == 0, report[-6000:]
        assert "passed" in report
