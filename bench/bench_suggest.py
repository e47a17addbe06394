"""Did-you-mean cost and recall over a large archive (``archiver.store.vocabulary``).

Run from the repository root on a copy of the archive (opening it migrates it)::

    .venv/bin/python bench/bench_suggest.py --db /tmp/archive.db [--n 200] [--seed 1]

Words of 5 letters or more are drawn from the archive's vocabulary (one in 20 of its
words, the ones in at least 3 versions); each gets a typo of one edit (a substituted
letter) and one of two edits (two substituted letters, the first two letters kept, the
case the range read covers), at random positions. Each typo is searched for suggestions
as a query with no results would be (``suggest(archive, parse(typo))``), timed with
``time.perf_counter`` after one untimed warm-up pass; recall is how often the original
word, or a word of its family, is among the suggestions.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from archiver.query import parse  # noqa: E402
from archiver.store.archive import Archive  # noqa: E402
from archiver.store.vocabulary import CYRILLIC, VOCAB, _ensure_vocab, suggest  # noqa: E402
from archiver.text import forms  # noqa: E402


def typo(rng: random.Random, word: str, edits: int) -> str:
    chars = list(word)
    positions = rng.sample(range(2 if edits > 1 else 0, len(word)), edits)
    for p in positions:
        chars[p] = rng.choice([c for c in CYRILLIC if c != chars[p]])
    return "".join(chars)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", type=Path, required=True)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    archive = await Archive.open(args.db, create=False)
    try:
        await _ensure_vocab(archive)
        t = time.perf_counter()
        rows = await archive.fetchall(f"SELECT term, doc FROM {VOCAB}")
        full = time.perf_counter() - t
        words = [r[0] for r in rows if len(r[0]) >= 5 and r[1] >= 3 and r[0][0] in CYRILLIC]
        posts = (await archive.fetchone("SELECT count(*) FROM posts"))[0]
        print(f"archive: {posts} posts, {len(rows)} words in the vocabulary")
        print(f"reading the whole vocabulary once: {full * 1000:.0f} ms (what is avoided)")
        sample = rng.sample(words, min(args.n, len(words)))
        for edits in (1, 2):
            cases = [(w, typo(rng, w, edits)) for w in sample]
            for _, bad in cases:  # warm-up
                await suggest(archive, parse(bad))
            times: list[float] = []
            hit = 0
            for good, bad in cases:
                t = time.perf_counter()
                out = await suggest(archive, parse(bad))
                times.append((time.perf_counter() - t) * 1000)
                fam = forms(good) | {good}
                hit += any(c in fam for s in out for c in s.candidates)
            times.sort()
            p95 = times[int(0.95 * (len(times) - 1))]
            print(
                f"{edits} edit(s): {len(cases)} typos, p50 {statistics.median(times):.1f} ms,"
                f" p95 {p95:.1f} ms, max {times[-1]:.1f} ms; original offered {hit}/{len(cases)}"
            )
    finally:
        await archive.close()


if __name__ == "__main__":
    asyncio.run(main())
