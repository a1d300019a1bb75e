"""The bench's report as text: a block per model, the run's shared figures, and the periodic benchmarks' table."""
from __future__ import annotations

FOREIGN_CPU_WARN_S = 2.0  # CPU seconds other processes may use during a phase before its timings are suspect


def _model_summary(r: dict) -> list[str]:
    """One model's block of the report: steps, limits per backend, the pipeline against its limit."""
    lines = [f"== model {r['model']}: pipeline backend {r['backend']}, inference batches of {r['infer_batch']}", ""]
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
              f"pipeline                {r['pipeline_img_s']:9.1f} img/s  = {100 * r['ratio_pipeline_to_limit']:.1f}% "
              f"of the limit ({p['images']} images in {p['total_s']:.2f} s, {p['failed']} failed, "
              f"accuracy {p['accuracy']:.3f})"]
    if "ratio_pipeline_to_floor" in r:
        lines.append(f"pipeline per core       {r['pipeline_img_s_per_core']:9.1f} img/s  = "
                     f"{r['ratio_pipeline_to_floor']:.2f} of the floor "
                     f"({r['floor_img_s_per_core']:.1f} img/s per core)")
    lines += [f"upload {p['upload_s']:.2f} s, accepted {p['accepted_s']:.2f} s after it, "
              f"first result {r['first_result_s']:.2f} s after the upload completed",
              f"chunk latency p50 {r['chunk_p50_s']:.2f} s, p99 {r['chunk_p99_s']:.2f} s ({p['chunks']} chunks)"]
    if r.get("pipeline_cpu_s_by_role"):
        lines.append("CPU seconds during the pipeline run: " + ", ".join(
            f"{k} {v:.1f}" for k, v in sorted(r["pipeline_cpu_s_by_role"].items(), key=lambda kv: -kv[1])))
        lines.append(f"first chunk started {p['first_chunk_start_s']:.2f} s after the upload began; worker processes "
                     f"busy in chunks {100 * p['workers_busy_share']:.1f}% of the time from then to the last result")
    if "int8_vs_onnx" in r:
        lines.append(f"int8 / onnx fp32: {r['int8_vs_onnx']['end_to_end']:.2f}x end to end, "
                     f"{r['int8_vs_onnx']['inference_only']:.2f}x inference only")
    return lines + [""]


def summary(r: dict) -> str:
    """The human-readable report: a block per model, then what the run shares."""
    lines = [f"{r['images']} images, {r['cores']} cores, {r['worker_processes']} worker processes, chunks "
             f"{r['first_chunk_size']} then {r['chunk_size']}, storage {r.get('storage', 'local')}; "
             f"load average before {r['load_avg_before'][0]:.2f}", ""]
    for mr in r["models"].values():
        lines += _model_summary(mr)
    lines.append("each model's pipeline against its own tight-loop limit: " + ", ".join(
        f"{m} {mr['pipeline_img_s']:.1f} img/s = {100 * mr['ratio_pipeline_to_limit']:.1f}% of "
        f"{mr['limit_img_s']:.1f}" for m, mr in r["models"].items()))
    if "baseline_img_s" in r:
        lines.append(f"per-image baseline ({r['model']}) {r['baseline_img_s']:9.1f} img/s  (its pipeline = "
                     f"{r['pipeline_to_baseline']:.1f}x; {r['baseline']['images']} sequential requests)")
    lines += ["worker pool processes (after the jobs; other backends load on first use): " + ", ".join(
                  f"RSS {w['rss_mb']:.0f} MB / USS {w['uss_mb']:.0f} MB" for w in r["worker_rss"]),
              "RSS by process kind (largest): " + ", ".join(
                  f"{k} {v:.0f} MB" for k, v in r.get("rss_mb_by_process", {}).items())]
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
    head = f"{'when (UTC)':<20} {'pool':<4} {'model':<8} {'backend':<11} {'host':<14} {'batch':>5} {'median ms':>9} " \
           f"{'p99 ms':>8} {'img/s':>8} {'vs eager':>8} {'accuracy':>8}"
    out = [head, "-" * len(head)]
    fmt = lambda v, spec: format(v, spec) if v is not None else "-"  # noqa: E731
    for r in rows:
        out.append(f"{r['created_at'][:19]:<20} {r['pool']:<4} {r.get('model', '-'):<8} {r['backend']:<11} "
                   f"{r['host'][:14]:<14} "
                   f"{r['batch_size']:>5} {fmt(r['median_ms'], '9.2f'):>9} {fmt(r['p99_ms'], '8.2f'):>8} "
                   f"{fmt(r['images_per_s'], '8.0f'):>8} {fmt(r['speedup_vs_eager'], '7.2f') + 'x':>8} "
                   f"{fmt(r['sample_accuracy'], '8.3f'):>8}" + (f"  error: {r['error']}" if r["error"] else ""))
    return "\n".join(out)
