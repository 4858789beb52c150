"""For the one-stage tests: a short generated recording and the offline engines on a process pool, made once."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

import pytest

from service.engines.protocols import Engines
from service.sample import Sample
from tests.support.stage_bench import pool_and_engines, short_sample


@pytest.fixture(scope="package")
def short(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    return short_sample(tmp_path_factory.mktemp("short-sample"))


@pytest.fixture(scope="package")
def offline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ProcessPoolExecutor, Engines]]:
    with pool_and_engines(tmp_path_factory.mktemp("numba")) as made:
        yield made
