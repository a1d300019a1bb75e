"""`fashion-batch bench`: how close the pipeline gets to this machine's limit, on the same images and cores.

    fashion-batch bench --images 10000 --json bench-out/bench.json
    fashion-batch bench --history              # the periodic backend benchmarks, as a table
    fashion-batch bench --faults --images 20000  # the fault suite's counts (bench/faults.py)

One run measures (0) the per-step table: decode, prepare and inference per backend on one core, and the floor
(bench/steps.py); (a) the limit: a tight decode/preprocess/infer loop, one process per core, per backend;
(b) the pipeline: one ZIP job through HTTP, Redis, Celery and PostgreSQL on a private local stack;
(c) the per-image baseline: one HTTP request per image to /v1/classify from a sequential client.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline.settings import BACKENDS

OUT_DIR = Path("bench-out")
FOREIGN_CPU_WARN_S = 2.0  # CPU seconds other processes may use during a phase before its timings are suspect


def photo_zip(n: int, out_dir: Path, seed: int = 0, data_dir: Path | None = None) -> tuple[Path, list[int]]:
    """A ZIP of `n` catalogue-style JPEGs rendered from Fashion-MNIST test images (cached), and their labels."""
    from training.data import load_split
    from training.render import write_zip
    from training.report import CLASSES

    images, labels = load_split("test", data_dir)
    idx = np.arange(n) % len(images)  # more than 10,000 repeats the test set (with new renderings)
    path = out_dir / f"photos-{n}-seed{seed}.zip"
    if not path.exists():
        print(f"rendering {n} photos into {path} (once; later runs reuse it) ...", flush=True)
        tmp = path.with_suffix(".tmp")
        write_zip(tmp, images[idx], labels[idx], list(CLASSES), seed=seed)
        tmp.replace(path)
    return path, [int(v) for v in labels[idx]]


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def _quietly(what: str, measure, watch, foreign: dict, tries: int, wait: bool):
    """Run `measure()`; while other processes took the cores meanwhile, wait for quiet and measure again."""
    from pipeline.tools.bench.quiet import wait_until_quiet

    for attempt in range(1, tries + 1):
        before = watch.seconds
        result = measure()
        time.sleep(watch.interval_s)  # let the watcher see the phase's last second
        foreign[what] = watch.seconds - before
        if foreign[what] <= FOREIGN_CPU_WARN_S or attempt == tries or not wait:
            return result
        print(f"{what}: other processes used {foreign[what]:.1f} CPU-s meanwhile; measuring again when quiet",
              flush=True)
        wait_until_quiet()


def run(args: argparse.Namespace) -> dict:
    """Every measurement of one benchmark run, as the JSON document `--json` writes."""
    from pipeline.inference.classify import INFER_BATCH
    from pipeline.settings import load_settings
    from pipeline.tools.bench import stack as bench_stack
    from pipeline.tools.bench.limit import measure_limit
    from pipeline.tools.bench.quiet import ForeignCpu, wait_until_quiet
    from pipeline.tools.bench.steps import measure_steps

    settings = load_settings()
    backend = args.backend or settings.default_backend_for("cpu")
    cores = args.processes or os.cpu_count() or 1
    zip_path, labels = photo_zip(args.images, args.out_dir, args.seed, args.data_dir)
    if args.wait_quiet and not wait_until_quiet():
        print("warning: the machine did not become quiet; timings will be low", flush=True)
    report: dict = {"when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "images": args.images,
                    "cores": cores, "backend": backend,
                    "worker_processes": args.concurrency or settings.worker_concurrency or cores + 1,
                    "storage": args.storage,
                    "chunk_size": args.chunk_size or settings.chunk_size,
                    "first_chunk_size": args.first_chunk_size or settings.first_chunk_size,
                    "load_avg_before": os.getloadavg(), "backends": {}, "foreign_cpu_s": {}}
    foreign, tries = report["foreign_cpu_s"], args.tries
    with ForeignCpu() as watch:
        if args.step_images:
            print(f"steps: decode, prepare and inference on one core, {min(args.step_images, args.images)} photos ...",
                  flush=True)
            step_backends = list(dict.fromkeys([*(args.limit_backends or []), backend, "int8"]))
            report["steps"] = _quietly("steps", lambda: measure_steps(
                zip_path, settings.weights_dir, step_backends, images=args.step_images, batch_size=INFER_BATCH),
                watch, foreign, tries, args.wait_quiet)
        for name in dict.fromkeys([*(args.limit_backends or []), backend]):
            print(f"limit: {name} on {cores} processes ...", flush=True)
            r = _quietly(f"limit {name}", lambda name=name: measure_limit(
                zip_path, name, settings.weights_dir, processes=cores, batch_size=INFER_BATCH,
                max_pixels=settings.limits.max_pixels), watch, foreign, tries, args.wait_quiet)
            report["backends"][name] = {"limit_img_s": r.img_s, "infer_img_s": r.infer_img_s,
                                        "prepare_ms_per_image": r.prepare_ms_per_image,
                                        "infer_ms_per_image": r.infer_ms_per_image}
        overrides = {"FB_CHUNK_SIZE": str(report["chunk_size"]), "FB_FIRST_CHUNK_SIZE": str(report["first_chunk_size"]),
                     "FB_WORKER_CONCURRENCY": str(report["worker_processes"]),
                     "FB_PRELOAD_BACKENDS": backend}  # so no run pays for loading (backends load on first use)
        with tempfile.TemporaryDirectory(prefix="fb-bench-") as tmp:
            watch.data_dir = Path(tmp)  # the private stack's processes are part of the benchmark, not foreign
            with bench_stack.private_stack(Path(tmp), overrides, storage=args.storage) as stack:
                print(f"pipeline: private stack at {stack.state['web_url']} ...", flush=True)
                bench_stack.wait_until_loaded(stack)

                def pipeline_once() -> dict:
                    ours = dict(watch.ours)
                    job = bench_stack.run_job(stack, zip_path, backend, labels)
                    time.sleep(watch.interval_s)
                    job["cpu_s_by_role"] = {k: v - ours.get(k, 0.0) for k, v in watch.ours.items()
                                            if v - ours.get(k, 0.0) > 0.05}
                    return job

                job = _quietly("pipeline", pipeline_once, watch, foreign, tries, args.wait_quiet)
                report["pipeline_cpu_s_by_role"] = job.pop("cpu_s_by_role")
                report["worker_rss"] = bench_stack.worker_memory(stack)
                report["rss_mb_by_process"] = bench_stack.memory_by_kind(stack)
                if args.baseline_images:
                    print(f"baseline: {min(args.baseline_images, args.images)} single-image requests ...", flush=True)
                    report["baseline"] = _quietly(
                        "baseline", lambda: bench_stack.run_baseline(stack, zip_path, args.baseline_images, labels),
                        watch, foreign, tries, args.wait_quiet)
        report["foreign_busiest"] = dict(sorted(watch.busiest.items(), key=lambda kv: -kv[1])[:5])
    return _headline(report, job)


def _headline(report: dict, job: dict) -> dict:
    """Add the headline figures (the keys `--json` promises) to the report."""
    lat = job.pop("chunk_latencies_s")
    report["limit_img_s"] = report["backends"][report["backend"]]["limit_img_s"]
    report["pipeline"] = {**job, "chunks": len(lat), "chunk_p50_s": _pct(lat, 50), "chunk_p99_s": _pct(lat, 99)}
    report.update(
        pipeline_img_s=job["img_s"], ratio_pipeline_to_limit=job["img_s"] / report["limit_img_s"],
        first_result_s=job["first_result_s"], chunk_p50_s=_pct(lat, 50), chunk_p99_s=_pct(lat, 99),
        worker_rss_mb=max((w["rss_mb"] for w in report["worker_rss"]), default=None),
        load_avg_after=os.getloadavg(),
    )
    report["pipeline_img_s_per_core"] = job["img_s"] / report["cores"]
    floor = report.get("steps", {}).get("floor_img_s_per_core")
    if floor:
        report["floor_img_s_per_core"] = floor
        report["ratio_pipeline_to_floor"] = report["pipeline_img_s_per_core"] / floor
    if "baseline" in report:
        report["baseline_img_s"] = report["baseline"]["img_s"]
        report["pipeline_to_baseline"] = job["img_s"] / report["baseline_img_s"]
    if "onnx" in report["backends"] and "int8" in report["backends"]:
        b = report["backends"]
        report["int8_vs_onnx"] = {"end_to_end": b["int8"]["limit_img_s"] / b["onnx"]["limit_img_s"],
                                  "inference_only": b["int8"]["infer_img_s"] / b["onnx"]["infer_img_s"]}
    return report


def summary(r: dict) -> str:
    """The human-readable report."""
    lines = [f"{r['images']} images, {r['cores']} cores, {r['worker_processes']} worker processes, "
             f"pipeline backend {r['backend']}, chunks "
             f"{r['first_chunk_size']} then {r['chunk_size']}; load average before {r['load_avg_before'][0]:.2f}",
             ""]
    if "steps" in r:
        from pipeline.tools.bench.steps import table

        lines += [table(r["steps"]), ""]
    lines += [f"{'backend':<12} {'limit img/s':>12} {'infer-only img/s':>17} {'prep ms/img':>12} "
             f"{'infer ms/img':>13}"]
    for name, b in r["backends"].items():
        lines.append(f"{name:<12} {b['limit_img_s']:>12.1f} {b['infer_img_s']:>17.1f} "
                     f"{b['prepare_ms_per_image']:>12.2f} {b['infer_ms_per_image']:>13.3f}")
    p = r["pipeline"]
    lines += ["", f"limit ({r['backend']})          {r['limit_img_s']:9.1f} img/s",
              f"storage                 {r.get('storage', 'local')}",
              f"pipeline                {r['pipeline_img_s']:9.1f} img/s  = {100 * r['ratio_pipeline_to_limit']:.1f}% "
              f"of the limit ({p['images']} images in {p['total_s']:.2f} s, {p['failed']} failed, "
              f"accuracy {p['accuracy']:.3f})"]
    if "ratio_pipeline_to_floor" in r:
        lines.append(f"pipeline per core       {r['pipeline_img_s_per_core']:9.1f} img/s  = "
                     f"{r['ratio_pipeline_to_floor']:.2f} of the floor "
                     f"({r['floor_img_s_per_core']:.1f} img/s per core)")
    if "baseline_img_s" in r:
        lines.append(f"per-image baseline      {r['baseline_img_s']:9.1f} img/s  (pipeline = "
                     f"{r['pipeline_to_baseline']:.1f}x; {r['baseline']['images']} sequential requests)")
    lines += [f"upload {p['upload_s']:.2f} s, accepted {p['accepted_s']:.2f} s after it, "
              f"first result {r['first_result_s']:.2f} s after the upload completed",
              f"chunk latency p50 {r['chunk_p50_s']:.2f} s, p99 {r['chunk_p99_s']:.2f} s ({p['chunks']} chunks)",
              f"worker pool processes (after {r['backend']} jobs; other backends load on first use): " + ", ".join(
                  f"RSS {w['rss_mb']:.0f} MB / USS {w['uss_mb']:.0f} MB" for w in r["worker_rss"]),
              "RSS by process kind (largest): " + ", ".join(
                  f"{k} {v:.0f} MB" for k, v in r.get("rss_mb_by_process", {}).items())]
    if r.get("pipeline_cpu_s_by_role"):
        lines.append("CPU seconds during the pipeline run: " + ", ".join(
            f"{k} {v:.1f}" for k, v in sorted(r["pipeline_cpu_s_by_role"].items(), key=lambda kv: -kv[1])))
        lines.append(f"first chunk started {p['first_chunk_start_s']:.2f} s after the upload began; worker processes "
                     f"busy in chunks {100 * p['workers_busy_share']:.1f}% of the time from then to the last result")
    if "int8_vs_onnx" in r:
        lines.append(f"int8 / onnx fp32: {r['int8_vs_onnx']['end_to_end']:.2f}x end to end, "
                     f"{r['int8_vs_onnx']['inference_only']:.2f}x inference only")
    busy = {k: v for k, v in r["foreign_cpu_s"].items() if v > FOREIGN_CPU_WARN_S}
    if busy:
        used = ", ".join(f"{v:.1f} CPU-s in the {k} run" for k, v in busy.items())
        lines.append(f"WARNING: other processes used {used} ({', '.join(r['foreign_busiest'])}); "
                     "these timings do not hold: rerun on a quiet machine")
    foreign = ", ".join(f"{k} {v:.1f}" for k, v in r["foreign_cpu_s"].items())
    lines.append(f"load average after {r['load_avg_after'][0]:.2f}; CPU seconds used by other processes: {foreign}")
    return "\n".join(lines)


def history_table(rows: list[dict]) -> str:
    """The periodic benchmarks as a fixed-width table, newest first."""
    head = f"{'when (UTC)':<20} {'pool':<4} {'backend':<11} {'host':<14} {'batch':>5} {'median ms':>9} " \
           f"{'p99 ms':>8} {'img/s':>8} {'vs eager':>8} {'accuracy':>8}"
    out = [head, "-" * len(head)]
    fmt = lambda v, spec: format(v, spec) if v is not None else "-"  # noqa: E731
    for r in rows:
        out.append(f"{r['created_at'][:19]:<20} {r['pool']:<4} {r['backend']:<11} {r['host'][:14]:<14} "
                   f"{r['batch_size']:>5} {fmt(r['median_ms'], '9.2f'):>9} {fmt(r['p99_ms'], '8.2f'):>8} "
                   f"{fmt(r['images_per_s'], '8.0f'):>8} {fmt(r['speedup_vs_eager'], '7.2f') + 'x':>8} "
                   f"{fmt(r['sample_accuracy'], '8.3f'):>8}" + (f"  error: {r['error']}" if r["error"] else ""))
    return "\n".join(out)


def _fetch_history(limit: int) -> dict:
    from pipeline.tools.client import ClientError, from_environment

    client = from_environment()
    resp = client.session.get(f"{client.base_url}/v1/benchmarks", params={"limit": limit}, timeout=30)
    if resp.status_code != 200:
        raise ClientError(f"HTTP {resp.status_code}: {resp.text[:300]}")
    return resp.json()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fashion-batch bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=10_000, help="how many rendered photos (default 10000)")
    p.add_argument("--backend", choices=BACKENDS, help="the pipeline's backend (default: FB_DEFAULT_BACKEND)")
    p.add_argument("--json", type=Path, help="write every figure as JSON to this file")
    p.add_argument("--limit-backends", nargs="*", choices=BACKENDS, default=list(BACKENDS),
                   help="backends whose limit to measure (default: all)")
    p.add_argument("--step-images", type=int, default=1500,
                   help="photos for the per-step table and the floor, on one core (0: skip; default 1500)")
    p.add_argument("--baseline-images", type=int, default=1000, help="images for the per-image baseline (0: skip)")
    p.add_argument("--processes", type=int, help="processes for the limit and the worker (default: one per core)")
    p.add_argument("--concurrency", type=int,
                   help="worker pool processes (default: FB_WORKER_CONCURRENCY, else --processes + 1)")
    p.add_argument("--chunk-size", type=int, help="override FB_CHUNK_SIZE for this run")
    p.add_argument("--first-chunk-size", type=int, help="override FB_FIRST_CHUNK_SIZE for this run")
    p.add_argument("--storage", choices=("local", "s3"), default="local",
                   help="where the private stack keeps uploads: its storage folder, or an embedded SeaweedFS (S3)")
    p.add_argument("--seed", type=int, default=0, help="rendering seed")
    p.add_argument("--tries", type=int, default=3, help="measurements of a phase disturbed by other processes")
    p.add_argument("--no-wait-quiet", dest="wait_quiet", action="store_false",
                   help="start at once, even while other processes keep the cores busy")
    p.add_argument("--data-dir", type=Path, help="Fashion-MNIST folder (default: see training/data.py)")
    p.add_argument("--out-dir", type=Path, default=OUT_DIR, help="where the rendered ZIP is cached")
    p.add_argument("--history", action="store_true", help="print the periodic backend benchmarks and exit")
    p.add_argument("--limit", type=int, default=50, help="rows of history to print")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or print the history, or run the fault suite); return the exit status."""
    import sys

    argv = sys.argv[1:] if argv is None else argv
    if "--faults" in argv:
        from pipeline.tools.bench import faults

        return faults.main([a for a in argv if a != "--faults"])
    args = _parser().parse_args(argv)
    if args.history:
        from pipeline.tools.client import ClientError

        try:
            body = _fetch_history(args.limit)
        except ClientError as exc:
            print(f"error: {exc}")
            return 1
        print("latest per pool and backend:\n" + history_table(body["latest"]))
        print("\nhistory:\n" + history_table(body["history"]))
        return 0
    report = run(args)
    print("\n" + summary(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
