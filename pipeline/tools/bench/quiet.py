"""Is the machine quiet? Timings taken while other programs use the cores say little about the pipeline.

`ForeignCpu` samples, every second, the CPU time of every process that is not part of the benchmark (not this
process or its children, not the private stack under the benchmark's data folder) and adds it up, so a report
can say how much else ran during each phase. `wait_until_quiet` waits for such processes to go idle first.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import psutil


def _ours(data_dir: Path | None) -> set[int]:
    me = psutil.Process()
    roots = [me]
    if data_dir is not None:
        marker = str(data_dir)
        for p in psutil.process_iter(["cmdline", "environ"]):
            try:
                env = p.info["environ"] or {}
                if marker in " ".join(p.info["cmdline"] or ()) or env.get("FB_DATA_DIR") == marker:
                    roots.append(p)
            except (psutil.Error, TypeError):
                continue
    pids = set()
    for r in roots:
        try:
            pids |= {r.pid, *(c.pid for c in r.children(recursive=True))}
        except psutil.Error:
            continue
    return pids


def role(name: str, cmdline: list[str]) -> str:
    """What a process of the benchmark is for, from its command line (for the CPU breakdown)."""
    cmd = " ".join(cmdline)
    for word, label in (("gunicorn", "web"), ("flower", "flower"), (" beat", "beat"), (" worker", "worker"),
                        ("postgres", "postgres"), ("redis", "redis"), ("spawn_main", "limit")):
        if word in cmd or word.strip() in name:
            return label
    return name or "?"


def _cpu_by_process() -> dict[tuple[int, float], tuple[str, float]]:
    out = {}
    for p in psutil.process_iter(["name", "cmdline", "cpu_times", "create_time"]):
        t = p.info["cpu_times"]
        if t is not None:
            out[(p.pid, p.info["create_time"])] = (role(p.info["name"] or "", p.info["cmdline"] or []),
                                                   t.user + t.system)
    return out


class ForeignCpu:
    """Adds up the CPU seconds that processes outside the benchmark use, in the background."""

    def __init__(self, interval_s: float = 1.0):
        self.interval_s = interval_s
        self.data_dir: Path | None = None  # set once the private stack's folder exists
        self.seconds = 0.0
        self.busiest: dict[str, float] = {}  # foreign CPU seconds by process role/name
        self.ours: dict[str, float] = {}  # the benchmark's own CPU seconds by role (web, worker, postgres...)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "ForeignCpu":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        last, ours, seen = _cpu_by_process(), set(), None
        while not self._stop.wait(self.interval_s):
            now = _cpu_by_process()
            if set(now) != seen:  # who is ours only changes when processes come or go (cheaper than every time)
                ours, seen = _ours(self.data_dir), set(now)
            for key, (name, cpu) in now.items():
                used = cpu - (last[key][1] if key in last else 0.0)  # a new process: all its time is new
                if used <= 0:
                    continue
                if key[0] == os.getpid():
                    self.ours["bench client"] = self.ours.get("bench client", 0.0) + used
                elif key[0] in ours:
                    self.ours[name] = self.ours.get(name, 0.0) + used
                else:
                    self.seconds += used
                    self.busiest[name] = self.busiest.get(name, 0.0) + used
            last = now


def wait_until_quiet(max_cpu_s_per_s: float = 0.1, seconds: float = 5.0, timeout_s: float = 600) -> bool:
    """Wait until other processes use under `max_cpu_s_per_s` cores for `seconds` in a row; False on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with ForeignCpu() as watch:
            time.sleep(seconds)
        if watch.seconds / seconds < max_cpu_s_per_s:
            return True
        print(f"waiting for a quiet machine: other processes used {watch.seconds / seconds:.2f} cores "
              f"({', '.join(sorted(watch.busiest, key=watch.busiest.get, reverse=True)[:3])})", flush=True)
    return False
