"""The waits of the worker's and the delivery's loops end with the cancellation that stops them, even when it
arrives in the loop turn their event is set (Python 3.11's `asyncio.wait_for` returns then, and the loop went on)."""

from __future__ import annotations

import asyncio

from service.supervisor.running import wait_set


async def test_a_cancel_in_the_turn_the_event_is_set_stops_the_loop() -> None:
    event = asyncio.Event()
    rounds = 0

    async def loop() -> None:
        nonlocal rounds
        while True:
            rounds += 1
            event.clear()
            await wait_set(event, 10)

    looping = asyncio.create_task(loop())
    await asyncio.sleep(0.01)
    event.set()  # a task ended (the worker's `_after`) ...
    looping.cancel()  # ... as the worker stops
    done, _ = await asyncio.wait([looping], timeout=2)
    assert done and looping.cancelled() and rounds == 1


async def test_it_says_whether_the_event_came_in_time() -> None:
    event = asyncio.Event()
    assert not await wait_set(event, 0.01)
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await wait_set(event, 5)
