"""Serve an app for the HTTP benchmarks in its own process, the way `dubbing serve` does.

    python -m bench._lib.serve_app service   # create_app(Settings.from_env(), registry={}) under uvicorn.run
    python -m bench._lib.serve_app bare      # a bare Starlette app: POST /v1/uploads returns a small JSON
    python -m bench._lib.serve_app noop worker   # every stage a no-op, as `dubbing serve --role worker` (or all/api)
    (or by path: python bench/_lib/serve_app.py service)

Both run exactly as `service.cli._serve` runs the service (uvicorn.run, lifespan on, log_level warning,
uvicorn's default loop and HTTP implementations), configured from the same environment (HOST, PORT,
DATABASE_URL, DATA_DIR, SUPABASE_JWT_SECRET, LOG_LEVEL, ...). The one difference from `dubbing serve`:
`registry={}`, so start-up does not build the offline engines or load a Whisper model into the CPU
workers; the routes, middleware, auth, listener and supervisor loop are the production ones.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run by path: the repository root is not on sys.path yet
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


async def bare_upload(request: Request) -> Response:
    """Reads the body (as any POST handler must) and answers with a small JSON."""
    await request.body()
    return JSONResponse({"ok": True}, status_code=201)


async def _noop(_ctx: object) -> None:
    return None


def noop_registry() -> dict[str, object]:
    """Every work stage does nothing: what is left is the queue, the claims and the transitions."""
    from service.domain import WORK_STAGES

    return dict.fromkeys(WORK_STAGES, _noop)


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

    if len(argv) not in (1, 2) or argv[0] not in ("service", "bare", "noop"):
        print(__doc__, file=sys.stderr)
        return 2
    settings = Settings.from_env().with_overrides(role=argv[1] if len(argv) == 2 else "all")
    configure(settings.log_format, settings.log_level)
    if argv[0] == "bare":
        app = bare_app()
    else:
        app = create_app(settings, registry=noop_registry() if argv[0] == "noop" else {})
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", lifespan="on")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
