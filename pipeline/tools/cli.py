"""The `fashion-batch` command (click, as Flask and Celery use): a thin dispatcher over the tooling modules.

API commands (`submit`, `status`, `results`, `cancel`) only talk HTTP: they never start servers or touch the
database. `keys` and `migrate` talk to the database named by DATABASE_URL or the running local stack.
"""
from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import click

SAMPLE_ZIP = Path(__file__).resolve().parent / "samples" / "sample-photos.zip"
_PASSTHROUGH = {"context_settings": {"ignore_unknown_options": True, "allow_extra_args": True},
                "add_help_option": False}


class _OneLineErrors(click.Group):
    """Report expected failures (service refused, bad settings, no stack) as one line, not a traceback."""

    def invoke(self, ctx: click.Context):
        from pipeline.settings import SettingsError
        from pipeline.tools.client import ClientError

        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise  # click's own (an Exit is a RuntimeError)
        except (ClientError, SettingsError, RuntimeError, TimeoutError, FileNotFoundError) as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)


@click.group(cls=_OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Batch classification of clothing photos into the ten Fashion-MNIST classes."""


# -- the local stack ------------------------------------------------------------------------------------------

@cli.command()
@click.option("--detach", is_flag=True, help="Run in the background; stop with `fashion-batch down`.")
@click.option("--quiet", is_flag=True, hidden=True)
@click.option("--storage", type=click.Choice(["local", "s3"]), default="local", show_default=True,
              help="Where uploads live: the local folder, or S3 (FB_STORAGE_URL's bucket, else an embedded "
                   "SeaweedFS under the data folder).")
def up(detach: bool, quiet: bool, storage: str) -> None:
    """Start the local stack (embedded PostgreSQL and Redis unless DATABASE_URL / REDIS_URL are set)."""
    from pipeline.tools import launcher

    launcher.up(detach=detach, quiet=quiet, storage=storage)


@cli.command()
def down() -> None:
    """Stop a stack started with `up --detach`."""
    from pipeline.tools import launcher

    click.echo("stopped" if launcher.down() else "no stack is running")


@cli.command()
def migrate() -> None:
    """Apply database migrations (DATABASE_URL, or the embedded database, started for the purpose)."""
    from pipeline.settings import load_settings
    from pipeline.tools import launcher

    with launcher.database(load_settings()) as url:
        click.echo(f"database at head: {url}")


@cli.command()
@click.option("--stop", is_flag=True, help="Stop the stack afterwards (default: leave it up).")
def demo(stop: bool) -> None:
    """Start the stack, classify the bundled sample ZIP through the API, print the results."""
    from pipeline.settings import load_settings
    from pipeline.tools import client, launcher

    state = launcher.read_state(load_settings()) or launcher.up(detach=True)
    c = client.Client(state["web_url"], state["api_key"])
    click.echo(f"\nsubmitting {SAMPLE_ZIP.name} through {state['web_url']}/v1/jobs ...")
    job = c.submit([SAMPLE_ZIP])
    click.echo(f"job {job['id']}: {job['total']} images")
    final = c.wait(job["id"])
    items = list(c.results(job["id"]))
    click.echo()
    for item in items:
        outcome = item["error"] or f"{item['class_name']:<12} {item['confidence']:.3f}"
        click.echo(f"  {item['name']:<48} {outcome}")
    click.echo(f"\njob {final['status']}: {final['done']} labelled, {final['failed']} failed\n")
    click.echo(client.summary(items))
    click.echo(f"\njob page: {job['page_url']}")
    click.echo(f"Flower:   {state['flower_url']} (user {state['flower_user']}, password {state['flower_password']})")
    if stop:
        launcher.down()
        click.echo("stack stopped (run `fashion-batch up` to start it again)")
    else:
        click.echo("The stack keeps running; stop it with: .venv/bin/fashion-batch down")
    sys.exit(0 if final["status"] in ("succeeded", "partial") else 1)


# -- API keys (the database) ----------------------------------------------------------------------------------

@cli.group()
def keys() -> None:
    """Manage API keys in the database of DATABASE_URL or of the running local stack."""


def _key_engine():
    from pipeline.settings import load_settings
    from pipeline.store.engine import get_engine
    from pipeline.tools import launcher

    return get_engine(launcher.database_url(load_settings()))


@keys.command("create")
@click.argument("name")
@click.option("--source", "sources", multiple=True, metavar="s3://BUCKET/PREFIX/",
              help="A bucket prefix this key may make jobs from (repeat for several; its bucket must also be in "
                   "FB_S3_SOURCE_BUCKETS).")
def keys_create(name: str, sources: tuple[str, ...]) -> None:
    """Create a key called NAME and print it (it is shown only once, on the last line)."""
    from pipeline.store import keys as store

    record, key = store.create_key(_key_engine(), name, _checked_sources(sources))
    click.echo(f"created key {record.name!r} (prefix {record.prefix}); it is shown only this once.")
    click.echo(f"callback signing secret: {record.signing_secret}")
    click.echo(key)


def _checked_sources(sources: tuple[str, ...]) -> list[str]:
    from pipeline.blobs.s3 import parse_url

    try:
        return [f"s3://{b}/{p}" for b, p in map(parse_url, sources)]
    except ValueError as exc:
        raise click.BadParameter(f"a source is s3://BUCKET/PREFIX/: {exc}", param_hint="--source") from None


@keys.command("grant")
@click.argument("ident")
@click.argument("sources", nargs=-1, metavar="[s3://BUCKET/PREFIX/]...")
def keys_grant(ident: str, sources: tuple[str, ...]) -> None:
    """Set the bucket prefixes the key IDENT (name, prefix or id) may make jobs from; none takes all away."""
    from pipeline.store import keys as store

    n = store.grant_sources(_key_engine(), ident, _checked_sources(sources))
    if not n:
        raise click.ClickException(f"no live key named {ident!r}")
    click.echo(f"{n} key(s) may now read: {', '.join(sources) or 'no source'}")


@keys.command("rotate")
def keys_rotate() -> None:
    """Revoke the local stack's development key and make a new one (kept across restarts); print it."""
    from pipeline.settings import load_settings
    from pipeline.tools import launcher
    from pipeline.tools.credentials import rotate

    settings = load_settings()
    key = rotate(settings, _key_engine())
    if (state := launcher.read_state(settings)) is not None:
        launcher.write_state(settings, {**state, "api_key": key})  # the running stack's CLI uses it at once
    click.echo("the development key was revoked; its successor (kept across restarts of this data folder):")
    click.echo(key)


@keys.command("list")
def keys_list() -> None:
    """List keys (never the keys themselves)."""
    from pipeline.store import keys as store

    for k in store.list_keys(_key_engine()):
        state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
        sources = f"  sources: {', '.join(k.sources)}" if k.sources else ""
        click.echo(f"{k.id}  {k.prefix}...  {k.name:<20}  created {k.created_at:%Y-%m-%d %H:%M}  {state}{sources}")


@keys.command("revoke")
@click.argument("ident")
def keys_revoke(ident: str) -> None:
    """Revoke keys by name, prefix or id."""
    from pipeline.store import keys as store

    n = store.revoke_key(_key_engine(), ident)
    click.echo(f"revoked {n} key(s)")
    sys.exit(0 if n else 1)


# -- the HTTP API ---------------------------------------------------------------------------------------------

def _api_options(f):
    f = click.option("--api-key", help="API key (default: FB_API_KEY, or the local stack's development key).")(f)
    return click.option("--url", help="Service URL (default: FB_URL, or the local stack).")(f)


def _job_id(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a job id (job ids are UUIDs, as `submit` prints them)") \
            from None


def _client(url: str | None, api_key: str | None):
    from pipeline.tools.client import from_environment

    return from_environment(url, api_key)


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--backend", type=click.Choice(["eager", "torchscript", "onnx", "int8"]), help="Model runtime.")
@click.option("--pool", type=click.Choice(["cpu", "gpu"]), help="Worker pool.")
@click.option("--callback-url", help="URL to POST a signed notice to when the job ends.")
@click.option("--wait", is_flag=True, help="Show a progress bar until the job ends, then a summary.")
@_api_options
def submit(paths: tuple[Path, ...], backend: str | None, pool: str | None, callback_url: str | None,
           wait: bool, url: str | None, api_key: str | None) -> None:
    """Upload images, ZIP archives and folders (walked recursively; images found by content) as one job."""
    from pipeline.tools import client

    c = _client(url, api_key)
    job = c.submit(list(paths), backend=backend, pool=pool, callback_url=callback_url)
    click.echo(f"job {job['id']} {job['status']}: {job['total']} images")
    if job["left_out"]:
        click.echo(f"left out {len(job['left_out'])} file(s), not sent:")
        for path, why in job["left_out"][:20]:
            click.echo(f"  {path}: {why}")
        if len(job["left_out"]) > 20:
            click.echo(f"  ... and {len(job['left_out']) - 20} more")
    click.echo(f"status: {job['status_url']}")
    click.echo(f"page:   {job['page_url']}")
    if wait:
        final = c.wait(job["id"])
        click.echo(f"job {final['id']} {final['status']}: {final['done']} labelled, {final['failed']} failed")
        click.echo(client.summary(list(c.results(job["id"]))))
        if final.get("accuracy"):
            click.echo(client.accuracy_summary(final["accuracy"]))
        sys.exit(0 if final["status"] in ("succeeded", "partial") else 1)


@cli.command()
@click.argument("job", callback=_job_id)
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON, for scripts.")
@_api_options
def status(job: str, as_json: bool, url: str | None, api_key: str | None) -> None:
    """Show a job's status: progress, outcome counts, links, and accuracy once a labelled job ends."""
    from pipeline.tools.client import status_summary

    body = _client(url, api_key).job(job)
    click.echo(json.dumps(body, indent=2) if as_json else status_summary(body))


@cli.command()
@click.argument("job", callback=_job_id)
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), help="Save the results as CSV to this file.")
@_api_options
def results(job: str, csv_path: Path | None, url: str | None, api_key: str | None) -> None:
    """Print a job's results, or save them as CSV."""
    c = _client(url, api_key)
    if csv_path:
        c.results_csv(job, csv_path)
        click.echo(f"wrote {csv_path}")
        return
    for item in c.results(job):
        if item["label"] is not None:
            outcome = f"{item['class_name']} ({item['confidence']:.3f})"
        else:
            outcome = item["error"] or item.get("outcome", "pending")
        click.echo(f"{item['name']}\t{outcome}")


@cli.command()
@click.argument("job", callback=_job_id)
@_api_options
def cancel(job: str, url: str | None, api_key: str | None) -> None:
    """Cancel a job."""
    click.echo(f"job {job}: {_client(url, api_key).cancel(job)['status']}")


# -- training and measurement (argparse scripts of their own; `--help` is theirs) -----------------------------

@cli.command(**_PASSTHROUGH)
@click.pass_context
def train(ctx: click.Context) -> None:
    """Train the CNN and export every backend (training/train.py), or with --photos PATH fine-tune the shipped
    model on labelled photos with Fashion-MNIST replay (training/finetune_photos.py); --help for the options."""
    if any(a == "--photos" or a.startswith("--photos=") for a in ctx.args):
        from training.finetune_photos import main as run
    else:
        from training.train import main as run

    sys.exit(run(ctx.args) or 0)


@cli.command(**_PASSTHROUGH)
@click.pass_context
def evaluate(ctx: click.Context) -> None:
    """Evaluate every backend on Fashion-MNIST and labelled photos (training/evaluate.py; --help)."""
    from training.evaluate import main as run

    sys.exit(run(ctx.args) or 0)


@cli.command(**_PASSTHROUGH)
@click.pass_context
def bench(ctx: click.Context) -> None:
    """Benchmark the pipeline against its tight-loop limit (pipeline/tools/bench; --help)."""
    from pipeline.tools.bench.run import main as run

    sys.exit(run(ctx.args) or 0)


def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit status (the console script's entry point)."""
    try:
        cli.main(args=argv, prog_name="fashion-batch", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
