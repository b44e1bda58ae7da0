"""`lcr-audit` (also `python -m audit_store`): the auditors' command line.

One group, verb commands, an example in every --help. Library errors become CLI errors only
here. Exit codes: 0 fine; 1 the check failed (chain broken, decisions diverged, candidate
changes access with --fail-on-change, alerts found); 2 the command could not run (bad
option, no store, no OPA).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import click

from sidecar.identifiers import format_nhs_number

from . import checkpoints, export, queries
from . import replay as replay_mod
from .backends import StoreUrlError, is_postgres, open_store, sqlite_path
from .queries import Filters, QueryError
from .store import AuditWriteError

DEFAULT_DB = "var/audit.db"
DEFAULT_ARCHIVE = "var/bundles/archive"
DEFAULT_SERVE = Path("var/bundles/serve")


class CliError(click.ClickException):
    exit_code = 2


def _db_path(db: str | Path) -> Any:
    """The store --db names: a postgresql:// URL as is, else an existing SQLite file's Path."""
    text = str(db)
    if is_postgres(text):
        return text
    try:
        path = sqlite_path(text)
    except StoreUrlError as exc:
        raise CliError(str(exc)) from None
    if not path.exists():
        raise CliError(
            f"no audit store at {path}; pass --db or set LCR_SIDECAR_AUDIT_STORE_URL or LCR_SIDECAR_AUDIT_DB"
        )
    return path


def _key_anchor(db: Any) -> Path:
    """Where the DEV-ONLY checkpoint key is looked for: beside the SQLite file, and for
    PostgreSQL beside the default SQLite file (var/keys/), as the sidecar keeps it."""
    return Path(DEFAULT_DB) if isinstance(db, str) else db


db_option = click.option(
    "--db",
    default=DEFAULT_DB,
    envvar=["LCR_SIDECAR_AUDIT_STORE_URL", "LCR_SIDECAR_AUDIT_DB"],
    show_default=True,
    help="The audit store: a SQLite file (or sqlite:///PATH) or a postgresql://USER@HOST:PORT/DB URL "
    "(env LCR_SIDECAR_AUDIT_STORE_URL, else LCR_SIDECAR_AUDIT_DB).",
)


def _time_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--until", help="Before this time (UTC, ISO 8601; a date alone includes that whole day).")(f)
    f = click.option("--since", help="From this time (UTC, ISO 8601, e.g. 2026-11-01 or 2026-11-01T09:00:00Z).")(f)
    return f


def _page_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option(
        "--format", "fmt", type=click.Choice(["table", "json", "jsonl", "csv"]), default="table", show_default=True
    )(f)
    f = click.option("--detail", is_flag=True, help="Include the decision's full OPA input and result (json/jsonl).")(f)
    f = click.option("--newest-first", is_flag=True, help="Newest first (then page with --before-seq).")(f)
    f = click.option("--before-seq", type=int, help="Page: rows before this seq (with --newest-first).")(f)
    f = click.option("--after-seq", type=int, help="Page: rows after this seq (the previous page's next_after_seq).")(f)
    f = click.option(
        "--limit", type=click.IntRange(1, queries.MAX_LIMIT), default=50, show_default=True, help="Rows per page."
    )(f)
    f = click.option(
        "--outcome", multiple=True, help="Only these outcomes (allowed, denied, no-matching-record, …); repeatable."
    )(f)
    return f


def _filter_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Selection of decisions for export, replay and impact."""
    f = click.option("--seq-to", type=int, help="Up to this seq (inclusive).")(f)
    f = click.option("--seq-from", type=int, help="From this seq (inclusive).")(f)
    f = click.option("--outcome", multiple=True, help="Only these outcomes; repeatable.")(f)
    f = click.option("--service", "care_service", help="Only this care service (ODS code).")(f)
    f = click.option("--staff", "subject_id", help="Only this member of staff (token sub).")(f)
    f = click.option("--nhs-number", help="Only this resident.")(f)
    return _time_options(f)


def _filters(**kw: Any) -> Filters:
    try:
        return Filters.make(**{k: v for k, v in kw.items() if v not in (None, ())})
    except QueryError as exc:
        raise CliError(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def cli() -> None:
    """Auditors' tools for the LCR sidecar's decision log: verify it, query it, export it,
    replay its decisions, raise access alerts.

    \b
      lcr-audit verify
      lcr-audit who-accessed "999 000 0018" --since 2026-11-01
      lcr-audit replay --archive var/bundles/archive
      lcr-audit impact --candidate path/to/policies --fail-on-change
      lcr-audit alerts --since 2026-11-29
    """


# -- verify / checkpoint ---------------------------------------------------------------------


@cli.command()
@db_option
@click.option(
    "--public-key",
    "public_keys",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Trusted checkpoint key (PEM, public or private); repeatable. Default: "
    "$LCR_SIDECAR_AUDIT_CHECKPOINT_KEY_FILE, else the DEV-ONLY key beside the store.",
)
@click.option(
    "--max-unsigned",
    type=int,
    default=1000,
    show_default=True,
    help="Fail when more rows than this follow the last valid signed checkpoint.",
)
@click.option(
    "--archived-through",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Rows up to this seq were archived (exported, then removed): the log must start at the next seq, "
    "linked to a valid signed checkpoint at this one.",
)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal).")
def verify(
    db: str, public_keys: tuple[Path, ...], max_unsigned: int, archived_through: int, fmt: str, progress: bool | None
) -> None:
    """Check the hash chain and the signed checkpoints; report the first broken row.

    Exits 1 when a row was edited, deleted, inserted or reordered, when a checkpoint does not
    match or is not signed by a trusted key, or when too many rows are unsigned.

    \b
    Example:
      lcr-audit verify --db var/audit.db --public-key keys/audit-checkpoint.pub
    """
    from .verify import verify as run_verify

    db = _db_path(db)
    keys = _trusted_keys(db, public_keys)
    with _connection(db) as conn:
        _require_chain(conn)
        total = conn.execute("SELECT count(*) FROM decisions").fetchone()[0]
        with _progress(progress, total, "verifying") as bar:
            report = run_verify(conn, keys, max_unsigned=max_unsigned, progress=bar, archived_through=archived_through)
    if fmt == "json":
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        if report.ok:
            click.echo(
                f"OK: {report.rows} rows, chain intact from seq {report.first_seq or 0} to {report.last_seq or 0}; "
                f"{report.valid_checkpoints} signed checkpoints verified (keys {', '.join(report.key_ids) or 'none'}); "
                f"{report.unsigned_rows} rows after the last checkpoint"
            )
            click.echo(f"head {report.head_hash or '-'}")
        else:
            first = report.first_broken
            assert first is not None
            click.echo(f"BROKEN at seq {first.seq}: {first.message}")
            for problem in report.problems[1:10]:
                click.echo(f"  also: seq {problem.seq}: {problem.message}")
            if len(report.problems) > 10:
                click.echo(f"  … and {len(report.problems) - 10} more")
    sys.exit(0 if report.ok else 1)


def _trusted_keys(db: Any, paths: tuple[Path, ...]) -> dict[str, Any]:
    chosen: list[Path] = list(paths)
    if not chosen:
        env = os.environ.get("LCR_SIDECAR_AUDIT_CHECKPOINT_KEY_FILE")
        if env:
            chosen = [Path(env)]
        else:
            dev = checkpoints.dev_key_path(_key_anchor(db))
            pub = dev.with_suffix(".pub")
            if pub.exists() or dev.exists():
                click.echo(f"note: trusting the DEV-ONLY checkpoint key {pub if pub.exists() else dev}", err=True)
                chosen = [pub if pub.exists() else dev]
    try:
        return checkpoints.load_public_keys(chosen)
    except (OSError, checkpoints.CheckpointKeyError) as exc:
        raise CliError(str(exc)) from None


@cli.command()
@db_option
@click.option(
    "--key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="LCR_SIDECAR_AUDIT_CHECKPOINT_KEY_FILE",
    help=(
        "Ed25519 private key (PEM). Default: $LCR_SIDECAR_AUDIT_CHECKPOINT_KEY_FILE, "
        "else the DEV-ONLY key beside the store."
    ),
)
def checkpoint(db: str, key: Path | None) -> None:
    """Sign the current head of the chain now (the sidecar also signs every N rows).

    \b
    Example (e.g. hourly from cron, and before archiving an export):
      lcr-audit checkpoint --db var/audit.db --key /run/secrets/audit-checkpoint.pem
    """
    db = _db_path(db)
    if key is None and not checkpoints.dev_key_path(_key_anchor(db)).exists():
        # Signing with a fresh key nobody trusts would only make `verify` fail later.
        raise CliError("pass --key (or set LCR_SIDECAR_AUDIT_CHECKPOINT_KEY_FILE): the key the sidecar signs with")
    try:
        store = open_store(db, checkpoint_key=key, key_anchor=_key_anchor(db))
    except (checkpoints.CheckpointKeyError, AuditWriteError) as exc:
        raise CliError(str(exc)) from None
    try:
        cp = store.checkpoint()
    except Exception as exc:  # the database refused or is unreachable: say so, exit 2
        raise CliError(f"could not sign a checkpoint: {type(exc).__name__}: {exc}") from None
    finally:
        store.close()
    if cp is None:
        click.echo("the log is empty: nothing to sign")
    else:
        click.echo(f"checkpoint seq {cp['seq']} row_hash {cp['row_hash']} key {cp['key_id']} at {cp['time']}")


@cli.command()
@db_option
def migrate(db: str) -> None:
    """Create or update the PostgreSQL audit schema (run it as the schema's owner).

    Creates the log, the checkpoints, their append-only triggers and two roles to grant:
    lcr_audit_writer (INSERT and SELECT: the sidecar's login role) and lcr_audit_reader
    (SELECT: auditors). SQLite stores migrate themselves when opened.

    \b
    Example:
      lcr-audit migrate --db postgresql://lcr_owner@db.internal/lcr_audit
      psql … -c 'GRANT lcr_audit_writer TO lcr_sidecar'
    """
    if not is_postgres(db):
        raise CliError("migrate is for a postgresql:// store; a SQLite store migrates itself when the sidecar opens it")
    from .pg import migrate as run_migrate

    try:
        applied = run_migrate(db)
    except Exception as exc:  # unreachable, refused: exit 2 with the reason
        raise CliError(f"could not migrate: {type(exc).__name__}: {exc}") from None
    click.echo(f"applied: {', '.join(applied)}" if applied else "the audit schema is up to date")


# -- queries -----------------------------------------------------------------------------------


def _run_query(db: str, fmt: str, fn: Callable[..., dict[str, Any]], *args: Any, **kw: Any) -> None:
    db = _db_path(db)
    page = {k: kw.pop(k) for k in ("after_seq", "before_seq", "limit", "newest_first", "detail")}
    filters = {k: v for k, v in kw.items() if v not in (None, ())}
    try:
        result = fn(str(db), *args, **filters, **page)
    except (QueryError, AuditWriteError) as exc:
        raise CliError(str(exc)) from None
    rows = result["rows"]
    cursor_key = "next_before_seq" if page["newest_first"] else "next_after_seq"
    if fmt == "json":
        click.echo(json.dumps(result, indent=2))
        return
    if fmt == "jsonl":
        export.write_jsonl(rows, sys.stdout)
        return
    if fmt == "csv":
        export.write_csv(rows, sys.stdout, columns=queries.DETAIL_FIELDS if page["detail"] else queries.SUMMARY_FIELDS)
        return
    table = [
        {
            "seq": r["seq"],
            "time": (r["time"] or "")[:19].replace("T", " "),
            "outcome": r["outcome"] + (f" ({r['http_status']})" if r["http_status"] not in (200,) else ""),
            "staff": " ".join(
                x for x in (r["subject_id"], f"({r['subject_name']})" if r["subject_name"] else None) if x
            )
            or "-",
            "service": r["care_service"] or "-",
            "level": r["access_level"] or "-",
            "nhs_number": _nhs(r["nhs_number"]),
            "action": r["action"],
            "shown": _shown(r),
            "reasons": ", ".join(r["reasons"] or []) if isinstance(r["reasons"], list) else str(r["reasons"] or ""),
        }
        for r in rows
    ]
    _print_table(table)
    more = result.get(cursor_key)
    click.echo(
        f"{len(rows)} rows"
        + (f"; more with --{'before' if page['newest_first'] else 'after'}-seq {more}" if more else ""),
        err=True,
    )


def _nhs(value: str | None) -> str:
    return format_nhs_number(value) if value and len(value) == 10 else (value or "-")


def _shown(row: dict[str, Any]) -> str:
    returned = row.get("sections_returned")
    if row["action"] == "menu.read":
        allowed = row.get("sections_allowed") or []
        return f"menu: {len(allowed)} sections" if allowed else "-"
    if isinstance(returned, dict) and returned:
        return ", ".join(f"{k}:{v}" for k, v in sorted(returned.items()))
    return "-" if not row.get("resources_returned") else f"{row['resources_returned']} resources"


def _print_table(rows: list[dict[str, Any]], out: IO[str] | None = None) -> None:
    if not rows:
        click.echo("(none)", file=out)
        return
    names = list(rows[0])
    widths = {n: min(80, max(len(n), *(len(str(r[n])) for r in rows))) for n in names}
    click.echo("  ".join(n.ljust(widths[n]) for n in names).rstrip(), file=out)
    click.echo("  ".join("-" * widths[n] for n in names), file=out)
    for r in rows:
        click.echo("  ".join(_clip(str(r[n]), widths[n]).ljust(widths[n]) for n in names).rstrip(), file=out)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


@cli.command("who-accessed")
@db_option
@click.argument("nhs_number")
@_time_options
@_page_options
def who_accessed(db: str, nhs_number: str, fmt: str, **kw: Any) -> None:
    """Who asked for a resident's record (by NHS number), when, and what they were shown.

    \b
    Examples:
      lcr-audit who-accessed "999 000 0018"
      lcr-audit who-accessed 9990000018 --since 2026-11-01 --until 2026-11-30 --outcome allowed
      lcr-audit who-accessed 9990000018 --format json --limit 100 --after-seq 5120
    """
    _run_query(db, fmt, queries.who_accessed, nhs_number, **kw)


@cli.command()
@db_option
@click.argument("subject_id")
@_time_options
@_page_options
def staff(db: str, subject_id: str, fmt: str, **kw: Any) -> None:
    """What one member of staff (token `sub`) asked for, and what they were shown.

    \b
    Example:
      lcr-audit staff staff-0003 --since 2026-11-25
    """
    _run_query(db, fmt, queries.staff_activity, subject_id, **kw)


@cli.command()
@db_option
@click.argument("ods_code")
@_time_options
@_page_options
def service(db: str, ods_code: str, fmt: str, **kw: Any) -> None:
    """Everything asked for from one care service (ODS code).

    \b
    Example:
      lcr-audit service VM101 --outcome denied --format csv > vm101-denied.csv
    """
    _run_query(db, fmt, queries.service_activity, ods_code, **kw)


@cli.command()
@db_option
@click.option("--reason", help="Only this deny reason (e.g. care_service_not_in_london_icb).")
@click.option("--service", "care_service", help="Only this care service (ODS code).")
@click.option("--staff", "subject_id", help="Only this member of staff.")
@_time_options
@_page_options
def denials(db: str, fmt: str, **kw: Any) -> None:
    """Every request the policy refused, with its reasons.

    \b
    Examples:
      lcr-audit denials --since 2026-11-01
      lcr-audit denials --reason access_level_no_access --service VM101
    """
    kw.pop("outcome", None)
    _run_query(db, fmt, queries.denials, **kw)


# -- export ------------------------------------------------------------------------------------


@cli.command("export")
@db_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "csv", "fhir"]),
    default="jsonl",
    show_default=True,
    help="jsonl: one row per line; csv; fhir: FHIR R4 AuditEvent resources as NDJSON (IHE BALP).",
)
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="File to write (default: stdout)."
)
@_filter_options
def export_cmd(db: str, fmt: str, output: Path | None, **kw: Any) -> None:
    """Export decisions (streamed: any size, constant memory).

    \b
    Examples:
      lcr-audit export --format fhir --since 2026-11-01 -o november.ndjson
      lcr-audit export --format csv --nhs-number 9990000018 > resident.csv
      lcr-audit export --format jsonl --seq-from 1 --seq-to 100000 | gzip > part-1.jsonl.gz
    """
    db = _db_path(db)
    filters = _filters(**kw)
    writer = export.WRITERS[fmt]
    with _output(output) as out:
        try:
            n = writer(queries.iter_rows(str(db), filters, detail=True), out)
        except AuditWriteError as exc:
            raise CliError(str(exc)) from None
    click.echo(f"{n} decisions exported" + (f" to {output}" if output else ""), err=True)


@contextlib.contextmanager
def _output(path: Path | None) -> Iterator[IO[str]]:
    if path is None:
        yield sys.stdout
        return
    with open(path, "w", encoding="utf-8", newline="") as fh:
        yield fh


# -- replay / impact -----------------------------------------------------------------------------


def _engine_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option(
        "--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal)."
    )(f)
    f = click.option(
        "--details",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Write one JSON line per diverged/changed decision here.",
    )(f)
    f = click.option(
        "--no-dedupe", is_flag=True, help="Evaluate every decision, not once per distinct policy-relevant input."
    )(f)
    f = click.option(
        "--chunk", type=click.IntRange(1, 20000), default=2000, show_default=True, help="Inputs per OPA call."
    )(f)
    f = click.option(
        "--jobs",
        type=click.IntRange(1, 64),
        default=max(2, os.cpu_count() or 2),
        show_default=True,
        help="OPA calls in flight.",
    )(f)
    f = click.option(
        "--entrypoint", default=replay_mod.DEFAULT_ENTRYPOINT, show_default=True, help="Decision to evaluate."
    )(f)
    f = click.option(
        "--opa",
        "opa_bin",
        envvar="LCR_OPA_BIN",
        help="opa binary (default $LCR_OPA_BIN, else the pinned one via scripts/tools.sh).",
    )(f)
    return f


def _opa(opa_bin: str | None) -> str:
    if opa_bin:
        return opa_bin
    from bundles.build import opa_binary

    try:
        return opa_binary()
    except Exception as exc:  # tools.sh failed: say how to point at an opa
        raise CliError(f"no opa binary ({exc}); pass --opa or set LCR_OPA_BIN") from None


@contextlib.contextmanager
def _connection(db: Any) -> Iterator[Any]:
    """A read-only connection: sqlite3, or a PgReader for a postgresql:// store."""
    if isinstance(db, str):
        from .pg import read_connection

        try:
            with read_connection(db) as reader:
                yield reader
        except AuditWriteError as exc:
            raise CliError(str(exc)) from None
        return
    conn = sqlite3.connect(db, isolation_level=None, timeout=5)
    try:
        conn.execute("PRAGMA query_only = 1")
        conn.execute("PRAGMA temp_store = FILE")  # big GROUP BYs spill to disk, not memory
        yield conn
    finally:
        conn.close()


def _require_chain(conn: Any) -> None:
    if queries.dialect_of(conn) == "postgresql":
        if not conn.execute("SELECT to_regclass('decisions') IS NOT NULL").fetchone()[0]:
            raise CliError("no audit log in this database: run `lcr-audit migrate` as its owner, or start the sidecar")
        return
    columns = {r[1] for r in conn.execute("PRAGMA table_info(decisions)")}
    if "row_hash" not in columns:
        raise CliError(
            "this store predates the hash chain: open it once with the sidecar or `lcr-audit checkpoint` to migrate it"
        )


@contextlib.contextmanager
def _progress(enabled: bool | None, total: int, label: str) -> Iterator[Callable[[int], None] | None]:
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled or total <= 0:
        yield None
        return
    with click.progressbar(
        length=total, label=label, file=sys.stderr, show_pos=True, show_percent=True, show_eta=True
    ) as bar:
        yield bar.update


@contextlib.contextmanager
def _details(path: Path | None) -> Iterator[IO[str] | None]:
    if path is None:
        yield None
        return
    with open(path, "w", encoding="utf-8") as fh:
        yield fh


@cli.command("replay")
@db_option
@click.option(
    "--archive",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_ARCHIVE,
    show_default=True,
    help="Bundle archive: <archive>/<revision>.tar.gz.",
)
@click.option(
    "--verification-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="LCR_BUNDLE_VERIFICATION_KEY",
    help="Public key archived bundles must be signed with (default $LCR_BUNDLE_VERIFICATION_KEY, else the DEV key).",
)
@click.option(
    "--key-id",
    envvar="LCR_BUNDLE_SIGNING_KEY_ID",
    help="Signing key id (default $LCR_BUNDLE_SIGNING_KEY_ID or lcr-bundle-signing).",
)
@click.option("--skip-verify", is_flag=True, help="Load archived bundles without checking their signature.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@_engine_options
@_filter_options
def replay_cmd(
    db: str,
    archive: Path,
    verification_key: Path | None,
    key_id: str | None,
    skip_verify: bool,
    fmt: str,
    opa_bin: str | None,
    entrypoint: str,
    jobs: int,
    chunk: int,
    no_dedupe: bool,
    details: Path | None,
    progress: bool | None,
    **kw: Any,
) -> None:
    """Re-evaluate logged decisions with the real OPA and the archived bundle that made each.

    Counts reproduced / diverged / unreplayable decisions, with the reason for each
    divergence and each unreplayable group. Exits 1 when any decision diverged.

    \b
    Examples:
      lcr-audit replay
      lcr-audit replay --since 2026-11-01 --archive /srv/lcr/bundles/archive --format json
      lcr-audit replay --nhs-number 9990000018 --details diverged.jsonl
    """
    from bundles.build import DEFAULT_KEY_ID, DEV_VERIFICATION_KEY

    db = _db_path(db)
    filters = _filters(**kw)
    options = replay_mod.Options(
        opa=_opa(opa_bin),
        entrypoint=entrypoint,
        jobs=jobs,
        chunk=chunk,
        dedupe=not no_dedupe,
        verification_key=None if skip_verify else (verification_key or DEV_VERIFICATION_KEY),
        key_id=None if skip_verify else (key_id or DEFAULT_KEY_ID),
    )
    with _connection(db) as conn, _details(details) as details_out:
        total = queries.count(conn, filters)
        with _progress(progress, total, "replaying") as bar:
            options.progress, options.details = bar, details_out
            report = replay_mod.replay(conn, archive, filters, options)
    if fmt == "json":
        click.echo(json.dumps(report.as_dict(), indent=2, default=str))
    else:
        _replay_table(report)
    sys.exit(1 if report.diverged else 0)


def _replay_table(report: replay_mod.ReplayReport) -> None:
    d = report.as_dict()
    pct = (100.0 * report.reproduced / report.replayable) if report.replayable else 0.0
    rate = report.selected / report.seconds if report.seconds else 0.0
    _print_table(
        [
            {"decisions": "selected", "count": report.selected, "": ""},
            {"decisions": "reproduced", "count": report.reproduced, "": f"{pct:.2f}% of replayable"},
            {"decisions": "diverged", "count": report.diverged, "": ""},
            {"decisions": "unreplayable", "count": d["unreplayable"], "": ""},
        ]
    )
    if report.divergences:
        click.echo("\ndivergences:")
        _print_table(
            [
                {
                    "decisions": x["decisions"],
                    "revision": x["revision"],
                    "first seq": x["first_seq"],
                    "reason": x["reason"],
                }
                for x in d["divergences"][:50]
            ]
        )
    if report.unreplayable:
        click.echo("\nunreplayable:")
        _print_table([{"decisions": n, "reason": reason} for reason, n in report.unreplayable.most_common()])
    click.echo(
        f"\n{report.selected} decisions in {report.seconds:.1f}s ({rate:,.0f}/s); "
        f"{report.evaluations} evaluations in {report.opa_calls} OPA calls across {len(report.revisions)} revision(s)"
    )


@cli.command("impact")
@db_option
@click.option(
    "--candidate",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="Candidate policy folder (built like a release) or bundle .tar.gz.",
)
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.option("--fail-on-change", is_flag=True, help="Exit 1 when any decision would widen or narrow (for CI gates).")
@click.option(
    "--archive",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_ARCHIVE,
    show_default=True,
    help="Bundle archive holding the rosters the logged decisions were made with.",
)
@_engine_options
@_filter_options
def impact_cmd(
    db: str,
    candidate: Path,
    fmt: str,
    fail_on_change: bool,
    archive: Path,
    opa_bin: str | None,
    entrypoint: str,
    jobs: int,
    chunk: int,
    no_dedupe: bool,
    details: Path | None,
    progress: bool | None,
    **kw: Any,
) -> None:
    """What a candidate policy would change: the logged decisions evaluated against it.

    Compares each decision with what was decided at the time: widened (access granted,
    sections gained) or narrowed (access revoked, sections lost), grouped by access level,
    care service and section.

    \b
    Examples:
      lcr-audit impact --candidate ../policies-next
      lcr-audit impact --candidate build/lcr.tar.gz --since 2026-10-01 --format csv > impact.csv
      lcr-audit impact --candidate policies --fail-on-change --format json   # in CI
    """
    db = _db_path(db)
    filters = _filters(**kw)
    options = replay_mod.Options(
        opa=_opa(opa_bin), entrypoint=entrypoint, jobs=jobs, chunk=chunk, dedupe=not no_dedupe, archive=archive
    )
    with _connection(db) as conn, _details(details) as details_out:
        total = queries.count(conn, filters)
        with _progress(progress, total, "evaluating") as bar:
            options.progress, options.details = bar, details_out
            try:
                report = replay_mod.impact(conn, candidate, filters, options)
            except replay_mod.ReplayError as exc:
                raise CliError(str(exc)) from None
    if fmt == "json":
        click.echo(json.dumps(report.as_dict(), indent=2, default=str))
    elif fmt == "csv":
        export.write_csv(
            report.change_rows(), sys.stdout, columns=("access_level", "care_service", "section", "change", "decisions")
        )
    else:
        _impact_table(report)
    sys.exit(1 if fail_on_change and report.changed else 0)


def _impact_table(report: replay_mod.ImpactReport) -> None:
    click.echo(f"candidate {report.candidate} (revision {report.candidate_revision or 'unknown'})\n")
    _print_table(
        [
            {"decisions": "evaluated", "count": report.evaluated},
            {"decisions": "unchanged", "count": report.unchanged},
            {"decisions": "widened", "count": report.widened},
            {"decisions": "narrowed", "count": report.narrowed},
            {"decisions": "widened and narrowed", "count": report.mixed},
            {"decisions": "same access, other reasons", "count": report.other},
            {"decisions": "unreplayable", "count": sum(report.unreplayable.values())},
        ]
    )
    rows = report.change_rows()
    if rows:
        click.echo("\nchanges (section * = the whole record):")
        _print_table(rows[:100])
        if len(rows) > 100:
            click.echo(f"… {len(rows) - 100} more rows (use --format csv)")
    rate = report.selected / report.seconds if report.seconds else 0.0
    click.echo(
        f"\n{report.selected} decisions in {report.seconds:.1f}s ({rate:,.0f}/s); {report.evaluations} evaluations "
        f"in {report.opa_calls} OPA calls"
    )


# -- alerts ------------------------------------------------------------------------------------


@cli.command("alerts")
@db_option
@click.option(
    "--since",
    help="From this time (UTC, ISO 8601; a date alone is the start of that day). Default: 24 hours before --until.",
)
@click.option("--until", help="Before this time (UTC, ISO 8601; a date alone includes that whole day). Default: now.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option(
    "--bundle",
    type=click.Path(dir_okay=False, path_type=Path),
    default=str(DEFAULT_SERVE / "lcr.tar.gz"),
    show_default=True,
    help="Policy bundle with the alert rules (default: the published one).",
)
@click.option(
    "--roster",
    type=click.Path(dir_okay=False, path_type=Path),
    help=(
        "Roster bundle (data.roster) for the same-surname rule. "
        f"Default: {DEFAULT_SERVE / 'roster.tar.gz'} when present."
    ),
)
@click.option(
    "--verification-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="LCR_BUNDLE_VERIFICATION_KEY",
    help="Public key the bundles must be signed with (default $LCR_BUNDLE_VERIFICATION_KEY, else the DEV key).",
)
@click.option(
    "--key-id",
    envvar="LCR_BUNDLE_SIGNING_KEY_ID",
    help="Signing key id (default $LCR_BUNDLE_SIGNING_KEY_ID or lcr-bundle-signing).",
)
@click.option("--skip-verify", is_flag=True, help="Load the bundles without checking their signatures.")
@click.option(
    "--opa",
    "opa_bin",
    envvar="LCR_OPA_BIN",
    help="opa binary (default $LCR_OPA_BIN, else the pinned one via scripts/tools.sh).",
)
def alerts_cmd(
    db: Path,
    since: str | None,
    until: str | None,
    fmt: str,
    bundle: Path,
    roster: Path | None,
    verification_key: Path | None,
    key_id: str | None,
    skip_verify: bool,
    opa_bin: str | None,
) -> None:
    """Access monitoring: the alert rules of the policy bundle over a window of the log.

    Rules (policies/lcr/alerts, thresholds in its data.yaml): identifier probing, access
    outside the care service's working hours, unusual volume against the staff member's
    own history, a resident with the staff member's surname, repeated denials. Each alert
    names the rule, the staff member, the rows behind it (seq) and a severity.
    Exits 0 when there are no alerts, 1 when there are, 2 when they could not be computed.

    \b
    Examples:
      lcr-audit alerts                                  # the last 24 hours
      lcr-audit alerts --since 2026-11-29 --until 2026-11-29 --format json
      lcr-audit alerts --bundle var/bundles/archive/sha256-….tar.gz --roster roster.tar.gz
    """
    from bundles.build import DEFAULT_KEY_ID, DEV_VERIFICATION_KEY

    from . import alerts as alerts_mod

    db = _db_path(db)
    if roster is None and (DEFAULT_SERVE / "roster.tar.gz").is_file():
        roster = DEFAULT_SERVE / "roster.tar.gz"
    try:
        report = alerts_mod.run(
            db,
            since,
            until,
            opa=_opa(opa_bin),
            bundle=bundle,
            roster=roster,
            verification_key=None if skip_verify else (verification_key or DEV_VERIFICATION_KEY),
            key_id=None if skip_verify else (key_id or DEFAULT_KEY_ID),
        )
    except alerts_mod.AlertsError as exc:
        raise CliError(str(exc)) from None
    if fmt == "json":
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        _alerts_table(report)
    click.echo(f"{len(report.alerts)} alerts", err=True)
    sys.exit(1 if report.alerts else 0)


def _alerts_table(report: Any) -> None:
    click.echo(
        f"window {report.since[:19].replace('T', ' ')} to {report.until[:19].replace('T', ' ')} UTC: {report.rows} "
        "rows; "
        f"history from {report.history_since[:10]}; policy {report.policy_revision or 'unknown'}; "
        + (
            f"roster {report.roster_revision or 'unknown'}"
            if report.roster_revision
            else "no roster (same_surname not checked)"
        )
    )
    click.echo()
    _print_table(
        [
            {
                "severity": a.get("severity"),
                "rule": a.get("rule"),
                "staff": " ".join(
                    x for x in (a.get("subject_id"), f"({a['subject_name']})" if a.get("subject_name") else None) if x
                )
                or "-",
                "service": a.get("care_service") or "-",
                "rows": a.get("count"),
                "first (UTC)": str(a.get("first_time") or "")[:19].replace("T", " "),
                "last (UTC)": str(a.get("last_time") or "")[:19].replace("T", " "),
                "seq": _seq_list(a.get("seqs") or []),
                "message": a.get("message"),
            }
            for a in report.alerts
        ]
    )


def _seq_list(seqs: list[int], shown: int = 6) -> str:
    text = ", ".join(str(s) for s in seqs[:shown])
    return text + (f", … (+{len(seqs) - shown})" if len(seqs) > shown else "")


def main() -> None:
    cli(prog_name="lcr-audit")
