"""What the benchmarks share. Importing it puts the repository root on `sys.path`, so that a script run as
`python bench/<name>.py` imports `service` and `tests` (the tests' database, service and fake-cloud helpers):

    machine  the machine and the server: environment, load, waiting for quiet, CPU/RSS/PSS readers and samplers
    results  percentiles, latency summaries, the JSON writer (bench/results/<name>.json, or <name>.quick.json)
    servers  the service (or a bare app) in its own process, tokens
    inputs   generated voices, backgrounds and target-language clips; jobs run through the API
    stages   stage work replayed outside the service (run in pool workers and child processes)

Every benchmark runs against the PostgreSQL at `BENCH_DATABASE_URL` (else `DATABASE_URL`, else the machine's
local server) in databases it creates and drops itself (`tests.support.scratch_database`).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(tempfile.gettempdir()) / "dubbing-numba-cache"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

RATE = 48000  # the service's sample rate, and the inputs'
ADMIN_URL = (os.environ.get("BENCH_DATABASE_URL") or os.environ.get("DATABASE_URL")
             or "postgresql://postgres@127.0.0.1:5432/postgres")
