"""Serve an app for the HTTP benchmarks in its own process, the way `dubbing serve` does.

    python bench/serve_app.py service   # create_app(Settings.from_env(), registry={}) under uvicorn.run
    python bench/serve_app.py bare      # a bare Starlette app: POST /v1/uploads returns a small JSON

Both run exactly as `service.cli._serve` runs the service (uvicorn.run, lifespan on, log_level warning,
uvicorn's default loop and HTTP implementations), configured from the same environment (HOST, PORT,
DATABASE_URL, DATA_DIR, SUPABASE_JWT_SECRET, LOG_LEVEL, ...). The one difference from `dubbing serve`:
`registry={}`, so start-up does not build the offline engines or load a Whisper model into the CPU
workers; the routes, middleware, auth, listener and supervisor loop are the production ones.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse, Response  # noqa: E402
from starlette.routing import Route  # noqa: E402


async def bare_upload(request: Request) -> Response:
    """Reads the body (as any POST handler must) and answers with a small JSON."""
    await request.body()
    return JSONResponse({"ok": True}, status_code=201)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def bare_app() -> Starlette:
    return Starlette(routes=[Route("/v1/uploads", bare_upload, methods=["POST"]),
                             Route("/healthz", healthz, methods=["GET"])])


def main(argv: list[str]) -> int:
    import uvicorn

    from service.app import create_app
    from service.logs import configure
    from service.settings import Settings

    if len(argv) != 1 or argv[0] not in ("service", "bare"):
        print(__doc__, file=sys.stderr)
        return 2
    settings = Settings.from_env()
    configure(settings.log_format, settings.log_level)
    app = create_app(settings, registry={}) if argv[0] == "service" else bare_app()
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", lifespan="on")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
