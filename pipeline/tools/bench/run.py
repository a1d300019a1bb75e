"""`fashion-batch bench`: how close the pipeline gets to this machine's limit, on the same images and cores.

    fashion-batch bench --images 10000 --json bench-out/bench.json
    fashion-batch bench --history              # the periodic backend benchmarks, as a table

One run measures, for every model (the photo model and the Fashion-MNIST CNN, each with its own preprocessing):
(0) the per-step table: decode, prepare and inference per backend on one core, and the floor (bench/steps.py);
(a) the limit: a tight decode/preprocess/infer loop, one process per core, per backend;
(b) the pipeline: one ZIP job through HTTP, Redis, Celery and PostgreSQL on a private local stack, and its
ratio to that model's own limit; and once, for the default model,
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
from pipeline.tools.bench.report import FOREIGN_CPU_WARN_S, history_table, summary

OUT_DIR = Path("bench-out")


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


def _models(args: argparse.Namespace, settings) -> list[str]:
    """The models to measure: --models, else every model under FB_WEIGHTS_DIR, the default one first."""
    from pipeline.inference.catalogue import load_catalogue

    names = load_catalogue(settings.weights_dir).names
    chosen = args.models or sorted(names, key=lambda m: m != settings.default_model)
    unknown = [m for m in chosen if m not in names]
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}: choose from {', '.join(names)}")
    return list(chosen)


def run(args: argparse.Namespace) -> dict:
    """Every measurement of one benchmark run, as the JSON document `--json` writes: per model under `models`,
    and the first (default) model's figures at the top level as well."""
    from pipeline.inference.catalogue import load_catalogue
    from pipeline.inference.classify import infer_batch_for
    from pipeline.settings import load_settings
    from pipeline.tools.bench import stack as bench_stack
    from pipeline.tools.bench.limit import measure_limit
    from pipeline.tools.bench.quiet import ForeignCpu, wait_until_quiet
    from pipeline.tools.bench.steps import measure_steps

    settings = load_settings()
    catalogue = load_catalogue(settings.weights_dir)
    models = _models(args, settings)
    cores = args.processes or os.cpu_count() or 1
    zip_path, labels = photo_zip(args.images, args.out_dir, args.seed, args.data_dir)
    if args.wait_quiet and not wait_until_quiet():
        print("warning: the machine did not become quiet; timings will be low", flush=True)
    report: dict = {"when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "images": args.images,
                    "cores": cores,
                    "worker_processes": args.concurrency or settings.worker_concurrency or cores + 1,
                    "storage": args.storage,
                    "chunk_size": args.chunk_size or settings.chunk_size,
                    "first_chunk_size": args.first_chunk_size or settings.first_chunk_size,
                    "load_avg_before": os.getloadavg(), "models": {}, "foreign_cpu_s": {}}
    foreign, tries = report["foreign_cpu_s"], args.tries
    with ForeignCpu() as watch:
        for model in models:
            manifest = catalogue.get(model)
            folder, batch = manifest.root, infer_batch_for(manifest)
            backend = args.backend or settings.default_backend_for("cpu", manifest.serving)
            mr = report["models"][model] = {"model": model, "backend": backend, "infer_batch": batch,
                                             "backends": {}}
            if args.step_images:
                print(f"{model} steps: decode, prepare and inference on one core, "
                      f"{min(args.step_images, args.images)} photos ...", flush=True)
                step_backends = list(dict.fromkeys([*(args.limit_backends or []), backend, "int8"]))
                mr["steps"] = _quietly(
                    f"{model} steps", lambda folder=folder, sb=step_backends, b=batch: measure_steps(
                        zip_path, folder, sb, images=args.step_images, batch_size=b),
                    watch, foreign, tries, args.wait_quiet)
            for name in dict.fromkeys([*(args.limit_backends or []), backend]):
                print(f"{model} limit: {name} on {cores} processes ...", flush=True)
                r = _quietly(f"{model} limit {name}", lambda name=name, folder=folder, b=batch: measure_limit(
                    zip_path, name, folder, processes=cores, batch_size=b,
                    max_pixels=settings.limits.max_pixels), watch, foreign, tries, args.wait_quiet)
                mr["backends"][name] = {"limit_img_s": r.img_s, "infer_img_s": r.infer_img_s,
                                        "prepare_ms_per_image": r.prepare_ms_per_image,
                                        "infer_ms_per_image": r.infer_ms_per_image}
        preload = ",".join(dict.fromkeys(report["models"][m]["backend"] for m in models))
        overrides = {"FB_CHUNK_SIZE": str(report["chunk_size"]), "FB_FIRST_CHUNK_SIZE": str(report["first_chunk_size"]),
                     "FB_WORKER_CONCURRENCY": str(report["worker_processes"]),
                     "FB_PRELOAD_BACKENDS": preload}  # so no run pays for loading (backends load on first use)
        with tempfile.TemporaryDirectory(prefix="fb-bench-") as tmp:
            watch.data_dir = Path(tmp)  # the private stack's processes are part of the benchmark, not foreign
            with bench_stack.private_stack(Path(tmp), overrides, storage=args.storage) as stack:
                print(f"pipeline: private stack at {stack.state['web_url']} ...", flush=True)
                bench_stack.wait_until_loaded(stack)
                for model in models:
                    mr = report["models"][model]

                    def pipeline_once(model=model, backend=mr["backend"]) -> dict:
                        ours = dict(watch.ours)
                        job = bench_stack.run_job(stack, zip_path, backend, labels, model=model)
                        time.sleep(watch.interval_s)
                        job["cpu_s_by_role"] = {k: v - ours.get(k, 0.0) for k, v in watch.ours.items()
                                                if v - ours.get(k, 0.0) > 0.05}
                        return job

                    print(f"{model} pipeline: one job of {args.images} photos ...", flush=True)
                    job = _quietly(f"{model} pipeline", pipeline_once, watch, foreign, tries, args.wait_quiet)
                    mr["pipeline_cpu_s_by_role"] = job.pop("cpu_s_by_role")
                    _model_headline(mr, job, cores)
                report["worker_rss"] = bench_stack.worker_memory(stack)
                report["rss_mb_by_process"] = bench_stack.memory_by_kind(stack)
                if args.baseline_images:
                    print(f"baseline: {min(args.baseline_images, args.images)} single-image requests "
                          f"({models[0]}) ...", flush=True)
                    report["baseline"] = _quietly(
                        "baseline", lambda: bench_stack.run_baseline(stack, zip_path, args.baseline_images, labels,
                                                                     model=models[0]),
                        watch, foreign, tries, args.wait_quiet)
        report["foreign_busiest"] = dict(sorted(watch.busiest.items(), key=lambda kv: -kv[1])[:5])
    return _headline(report, models[0])


def _model_headline(mr: dict, job: dict, cores: int) -> None:
    """A model's headline figures: its pipeline against its own tight-loop limit and floor."""
    lat = job.pop("chunk_latencies_s")
    mr["limit_img_s"] = mr["backends"][mr["backend"]]["limit_img_s"]
    mr["pipeline"] = {**job, "chunks": len(lat), "chunk_p50_s": _pct(lat, 50), "chunk_p99_s": _pct(lat, 99)}
    mr.update(pipeline_img_s=job["img_s"], ratio_pipeline_to_limit=job["img_s"] / mr["limit_img_s"],
              first_result_s=job["first_result_s"], chunk_p50_s=_pct(lat, 50), chunk_p99_s=_pct(lat, 99),
              pipeline_img_s_per_core=job["img_s"] / cores)
    floor = mr.get("steps", {}).get("floor_img_s_per_core")
    if floor:
        mr["floor_img_s_per_core"] = floor
        mr["ratio_pipeline_to_floor"] = mr["pipeline_img_s_per_core"] / floor
    b = mr["backends"]
    if "onnx" in b and "int8" in b:
        mr["int8_vs_onnx"] = {"end_to_end": b["int8"]["limit_img_s"] / b["onnx"]["limit_img_s"],
                              "inference_only": b["int8"]["infer_img_s"] / b["onnx"]["infer_img_s"]}


def _headline(report: dict, first: str) -> dict:
    """The run's headline: the first (default) model's figures at the top level (the keys `--json` promises)."""
    report.update({k: v for k, v in report["models"][first].items() if k != "model"})
    report["model"] = first
    report.update(worker_rss_mb=max((w["rss_mb"] for w in report["worker_rss"]), default=None),
                  load_avg_after=os.getloadavg())
    if "baseline" in report:
        report["baseline_img_s"] = report["baseline"]["img_s"]
        report["pipeline_to_baseline"] = report["pipeline_img_s"] / report["baseline_img_s"]
    return report


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
    p.add_argument("--models", nargs="*", help="models to measure (default: every model in FB_WEIGHTS_DIR, the "
                                               "default one first; its figures are also the headline)")
    p.add_argument("--backend", choices=BACKENDS,
                   help="the pipeline's backend for every model (default: each model's CPU default)")
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
    """Run the benchmark (or print the history); return the exit status."""
    args = _parser().parse_args(argv)
    if args.history:
        from pipeline.tools.client import ClientError

        try:
            body = _fetch_history(args.limit)
        except ClientError as exc:
            print(f"error: {exc}")
            return 1
        print("latest per pool, model and backend:\n" + history_table(body["latest"]))
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
