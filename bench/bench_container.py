"""The container: image size, and the time from `docker run` to the first heartbeat.

    sudo bash ../shared/container/build-image.sh . localhost/telewatch:bench
    export CONTAINERS_CONF=/var/tmp/telewatch-container/containers.conf
    sudo -E .venv/bin/python bench/bench_container.py localhost/telewatch:bench [--rounds 5]

Per round, interleaved: the baseline (`podman run --rm IMAGE --version`: a container started,
Python and the CLI imported, exit), then `telewatch run --no-bot` on a fresh ./data volume with
no channels, timed from the `podman run -d` call to the heartbeat row in the archive (read from
the host, read-only), then `podman stop` (SIGTERM) to exit. Medians; podman and runc as
build-image.sh configures them. Figures go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

UID = 10001


def podman(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=True)


def heartbeat_written(db: Path) -> bool:
    if not (db.exists() and Path(f"{db}-shm").exists()):
        return False
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.2)
        try:
            row = con.execute("SELECT 1 FROM heartbeats WHERE process = 'run'").fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return False
    return row is not None


def one_round(image: str) -> tuple[float, float, float]:
    t = time.monotonic()
    podman("run", "--rm", "--no-healthcheck", image, "--version")
    baseline = time.monotonic() - t

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        os.chown(data, UID, UID)
        name = f"telewatch-bench-{uuid.uuid4().hex[:8]}"
        t = time.monotonic()
        podman("run", "-d", "--name", name, "--no-healthcheck", "-v", f"{data}:/data",
               image, "run", "--no-bot")  # fmt: skip
        try:
            while not heartbeat_written(data / "telewatch.db"):
                if time.monotonic() - t > 60:
                    raise SystemExit("no heartbeat within 60 s")
                time.sleep(0.02)
            to_heartbeat = time.monotonic() - t
            t = time.monotonic()
            podman("stop", "--time", "10", name)
            stop = time.monotonic() - t
            state = json.loads(podman("inspect", name).stdout)[0]["State"]
            assert state["ExitCode"] == 0, state
        finally:
            subprocess.run(["podman", "rm", "-f", name], capture_output=True, check=False)
    return baseline, to_heartbeat, stop


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("image")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    [info] = json.loads(podman("image", "inspect", args.image).stdout)
    first_from = Path("Dockerfile").read_text().split("FROM ", 1)[1].split()[0]
    base_tag = first_from if "/" in first_from else f"docker.io/library/{first_from}"
    [base] = json.loads(podman("image", "inspect", base_tag).stdout)
    print(f"image {args.image}: {info['Size'] / 1e6:.0f} MB; base {base_tag}: "
          f"{base['Size'] / 1e6:.0f} MB; telewatch and its dependencies: "
          f"{(info['Size'] - base['Size']) / 1e6:.0f} MB")  # fmt: skip

    one_round(args.image)  # warm: page cache, podman's storage
    rounds = [one_round(args.image) for _ in range(args.rounds)]
    for label, i in (("podman run --rm IMAGE --version (baseline)", 0),
                     ("podman run -d IMAGE run --no-bot -> first heartbeat", 1),
                     ("podman stop (SIGTERM) -> exited", 2)):  # fmt: skip
        values = [r[i] for r in rounds]
        print(f"{label}: median {statistics.median(values):.2f} s "
              f"(min {min(values):.2f}, max {max(values):.2f}, {len(values)} rounds)")  # fmt: skip


if __name__ == "__main__":
    main()
