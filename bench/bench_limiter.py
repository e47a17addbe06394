"""The rate limiter's own cost per message, CPU only (no HTTP, no database).

    .venv/bin/python bench/bench_limiter.py              # this checkout
    .venv/bin/python bench/bench_limiter.py /other/tree  # another checkout, to compare

- ``alert``: what the scheduler and the send task call for one alert (``delay``, ``record``,
  ``gate``, ``start``), limits out of the way, 50 chats in turn.
- ``pass-through``: a call marked ``PACED`` (an alert or a digest) through the Application's
  rate limiter (``bot.reply_limiter.ReplyLimiter.process_request``), over a bare await.

Best of 5 runs of 200,000, in microseconds, from ``time.process_time`` (load on the machine
matters less than for wall-clock figures).
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.delivery import Limits, RateLimiter  # noqa: E402

N = 200_000


def best_of(runs: int, work: object) -> float:
    assert callable(work)
    best = float("inf")
    for _ in range(runs):
        t = time.process_time()
        work()
        best = min(best, time.process_time() - t)
    return best


def main() -> None:
    lim = RateLimiter(Limits(overall_per_second=10_000, chat_interval=0.0, group_per_minute=10_000))

    def alerts() -> None:
        for i in range(N):
            chat = i % 50 + 1
            lim.delay(chat)
            lim.record(chat)
            lim.gate(chat)
            lim.start(chat)

    print(f"{ROOT}: alert {best_of(5, alerts) / N * 1e6:.2f} us")
    try:
        from bot.delivery import PACED
        from bot.reply_limiter import ReplyLimiter
    except ImportError:  # a checkout from before the replies' limiter
        return
    replies = ReplyLimiter(lim)

    async def call() -> bool:
        return True

    async def through() -> None:
        for _ in range(N):
            await replies.process_request(call, (), {}, "sendMessage", {"chat_id": 1}, PACED)

    async def bare() -> None:
        for _ in range(N):
            await call()

    extra = best_of(5, lambda: asyncio.run(through())) - best_of(5, lambda: asyncio.run(bare()))
    print(f"{ROOT}: pass-through {extra / N * 1e6:.2f} us over a bare await")


if __name__ == "__main__":
    main()
