"""The `fashion-batch` command: a thin dispatcher; each command's work lives in its own module."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

SAMPLE_ZIP = Path(__file__).resolve().parent / "samples" / "sample-photos.zip"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fashion-batch", description="Batch classification of clothing photos.")
    sub = p.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start the local stack (embedded PostgreSQL and Redis unless URLs are set)")
    up.add_argument("--detach", action="store_true", help="run in the background; stop with `fashion-batch down`")
    up.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
    sub.add_parser("down", help="stop a stack started with --detach")
    sub.add_parser("migrate", help="apply database migrations (DATABASE_URL, or the embedded database)")
    demo = sub.add_parser("demo", help="start the stack, classify the bundled sample ZIP, print the results")
    demo.add_argument("--stop", action="store_true", help="stop the stack afterwards (default: leave it up)")

    keys = sub.add_parser("keys", help="manage API keys").add_subparsers(dest="keys_command", required=True)
    keys.add_parser("create", help="create a key and print it (it is shown only once)").add_argument("name")
    keys.add_parser("list", help="list keys (never the keys themselves)")
    keys.add_parser("revoke", help="revoke keys by name, prefix or id").add_argument("ident")

    for name, helptext in (("submit", "upload images and ZIP archives as one job"),
                           ("results", "print or save a job's results"), ("status", "show a job's status"),
                           ("cancel", "cancel a job")):
        c = sub.add_parser(name, help=helptext)
        c.add_argument("--url", help="service URL (default: FB_URL or the local stack)")
        c.add_argument("--api-key", help="API key (default: FB_API_KEY or the local stack's development key)")
        if name == "submit":
            c.add_argument("paths", nargs="+", type=Path)
            c.add_argument("--backend", choices=("eager", "torchscript", "onnx", "int8"))
            c.add_argument("--pool", choices=("cpu", "gpu"))
            c.add_argument("--callback-url")
            c.add_argument("--wait", action="store_true", help="show a progress bar until the job ends")
        else:
            c.add_argument("job")
        if name == "results":
            c.add_argument("--csv", type=Path, help="save the results as CSV to this file")

    for name, helptext in (("train", "train the CNN and export weights/ (see training/train.py)"),
                           ("evaluate", "evaluate every backend (see training/evaluate.py)"),
                           ("bench", "benchmark the pipeline against its limit (see workers/bench.py)")):
        sub.add_parser(name, help=helptext, add_help=False)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit status."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("train", "evaluate", "bench"):
        return _delegate(argv[0], argv[1:])
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - a command-line tool reports errors as one line, not a trace
        from pipeline.client import ClientError
        from pipeline.settings import SettingsError

        if isinstance(exc, (ClientError, SettingsError, RuntimeError, TimeoutError, FileNotFoundError)):
            print(f"error: {exc}", file=sys.stderr)
            return 1
        raise


def _delegate(command: str, argv: list[str]) -> int:
    if command == "train":
        from training.train import main as run
    elif command == "evaluate":
        from training.evaluate import main as run
    else:
        from workers.bench import main as run
    return run(argv) or 0


def _run(args: argparse.Namespace) -> int:
    from pipeline import client, launcher
    from pipeline.settings import load_settings

    if args.command == "up":
        launcher.up(detach=args.detach, quiet=args.quiet)
    elif args.command == "down":
        print("stopped" if launcher.down() else "no stack is running")
    elif args.command == "migrate":
        with launcher.database(load_settings()) as url:
            print(f"database at head: {url}")
    elif args.command == "demo":
        return _demo(stop=args.stop)
    elif args.command == "keys":
        return _keys(args)
    else:
        c = client.from_environment(args.url, args.api_key)
        if args.command == "submit":
            job = c.submit(args.paths, backend=args.backend, pool=args.pool, callback_url=args.callback_url)
            print(f"job {job['id']} {job['status']}: {job['total']} images")
            print(f"status: {job['status_url']}")
            print(f"page:   {job['page_url']}")
            if args.wait:
                final = c.wait(job["id"])
                print(f"job {final['id']} {final['status']}: {final['done']} labelled, {final['failed']} failed")
                print(client.summary(list(c.results(job["id"]))))
                return 0 if final["status"] in ("succeeded", "partial") else 1
        elif args.command == "results":
            if args.csv:
                c.results_csv(args.job, args.csv)
                print(f"wrote {args.csv}")
            else:
                for item in c.results(args.job):
                    outcome = item["error"] or f"{item['class_name']} ({item['confidence']:.3f})"
                    print(f"{item['name']}\t{outcome}")
        elif args.command == "status":
            job = c.job(args.job)
            print(" ".join(f"{k}={v}" for k, v in job.items()))
        elif args.command == "cancel":
            print(f"job {args.job}: {c.cancel(args.job)['status']}")
    return 0


def _keys(args: argparse.Namespace) -> int:
    from pipeline import keys
    from pipeline.db import get_engine
    from pipeline.launcher import database
    from pipeline.settings import load_settings

    with database(load_settings()) as url:
        engine = get_engine(url)
        if args.keys_command == "create":
            record, key = keys.create_key(engine, args.name)
            print(f"created key {record.name!r} (prefix {record.prefix}); it is shown only this once.")
            print(f"callback signing secret: {record.signing_secret}")
            print(key)
        elif args.keys_command == "list":
            for k in keys.list_keys(engine):
                state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
                print(f"{k.id}  {k.prefix}...  {k.name:<20}  created {k.created_at:%Y-%m-%d %H:%M}  {state}")
        else:
            n = keys.revoke_key(engine, args.ident)
            print(f"revoked {n} key(s)")
            return 0 if n else 1
    return 0


def _demo(stop: bool) -> int:
    from pipeline import client, launcher
    from pipeline.settings import load_settings

    state = launcher.read_state(load_settings()) or launcher.up(detach=True)
    c = client.Client(state["web_url"], state["api_key"])
    print(f"\nsubmitting {SAMPLE_ZIP.name} through {state['web_url']}/v1/jobs ...")
    job = c.submit([SAMPLE_ZIP])
    print(f"job {job['id']}: {job['total']} images")
    final = c.wait(job["id"])
    items = list(c.results(job["id"]))
    print()
    for item in items:
        outcome = item["error"] or f"{item['class_name']:<12} {item['confidence']:.3f}"
        print(f"  {item['name']:<48} {outcome}")
    print(f"\njob {final['status']}: {final['done']} labelled, {final['failed']} failed\n")
    print(client.summary(items))
    print(f"\njob page: {job['page_url']}")
    print(f"Flower:   {state['flower_url']} (user {state['flower_user']}, password {state['flower_password']})")
    if stop:
        launcher.down()
        print("stack stopped (run `fashion-batch up` to start it again)")
    else:
        print("The stack keeps running; stop it with: .venv/bin/fashion-batch down")
    return 0 if final["status"] in ("succeeded", "partial") else 1


if __name__ == "__main__":
    sys.exit(main())
