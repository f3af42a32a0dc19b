"""`apsisctl status`: which daemon leads, as the database sees it (SPEC §1.14).

PostgreSQL: the `cluster` row (leader, epoch, its last heartbeat) and the Apsis
processes connected to the database, the one holding the daemon lock marked; read
through the store, opened read-only, so it works whichever daemon is down. SQLite:
one daemon at most (the process holding the file's lock), and what the daemons at
--url say of themselves on /alive.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import click

from apsis import present

from . import fmt
from .database import database_and_archive, is_url, need, shown, with_store
from .exitcodes import ExitStatus

UTC = dt.UTC
PROBE_TIMEOUT = 3.0  # /alive of each daemon at --url: a status must not hang on one


def run_status(db: str | None, config_path: str | None, client_obj: dict[str, Any],
               as_json: bool) -> int:
    """Prints the cluster; exit 0 when a daemon leads, 1 when none does."""
    path, _ = database_and_archive(db, config_path)
    postgres = is_url(path)
    if postgres:
        need(path)
    cluster = with_store(path, _read_cluster, readonly=True) if postgres or _exists(path) else None
    daemons = [] if postgres else _probe(client_obj)
    status = {"backend": "postgresql" if postgres else "sqlite", "database": shown(path),
              **(cluster or {}), "daemons": daemons}
    leads = any(n.get("leader") for n in status.get("nodes") or []) or any(
        d.get("role") == "leader" for d in daemons)
    if as_json:
        click.echo(fmt.dumps(status))
    else:
        _print(status, cluster is not None)
    return int(ExitStatus.SUCCESS if leads else ExitStatus.FAILURE)


def _exists(path: Any) -> bool:
    from pathlib import Path

    return Path(path).exists()


async def _read_cluster(store: Any) -> dict[str, Any]:
    cluster = dict(await store.cluster())
    heartbeat = cluster.get("heartbeat")
    if isinstance(heartbeat, dt.datetime):
        cluster["heartbeat"] = heartbeat.astimezone(UTC).isoformat().replace("+00:00", "Z")
        cluster["heartbeat_age_s"] = round(
            (dt.datetime.now(UTC) - heartbeat).total_seconds(), 1)
    for node in cluster.get("nodes") or []:
        if isinstance(node.get("since"), dt.datetime):
            node["since"] = node["since"].astimezone(UTC).isoformat().replace("+00:00", "Z")
    return cluster


def _probe(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """What each daemon of --url says on /alive (or why it did not answer)."""
    from apsis.client import ApsisError, Client, parse_urls

    found = []
    for endpoint in parse_urls(obj["url"]):
        client = Client(endpoint.url, obj.get("token"), timeout=PROBE_TIMEOUT, retry_for=0.0)
        try:
            alive = client.get_now("/alive")
        except ApsisError as exc:
            reasons = getattr(exc, "failures", None)
            found.append({"url": endpoint.url, "error": reasons[0][1] if reasons else exc.message})
            continue
        found.append({"url": endpoint.url, **{k: alive.get(k) for k in (
            "role", "leader", "epoch", "version", "started_at", "seq")}})
    return found


def _print(status: dict[str, Any], read: bool) -> None:
    lines: list[tuple[str, str]] = []
    backend, database = status["backend"], status["database"]
    if backend == "postgresql":
        lines.append(("database", f"{database} (PostgreSQL: a leader and standbys)"))
        leader, epoch = status.get("leader"), status.get("epoch")
        nodes = status.get("nodes") or []
        if not leader:
            lines.append(("leader", "none has led yet"))
        else:
            where = f" at {status['advertise']}" if status.get("advertise") else ""
            lead_now = any(n.get("leader") for n in nodes)
            lines.append(("leader", f"{leader}{where}, epoch {epoch}"
                          + ("" if lead_now else " (gone: its lock is free, a standby "
                             "takes over)")))
        if status.get("heartbeat"):
            lines.append(("heartbeat", f"{fmt.format_time(status['heartbeat'], compact=False)} "
                          f"({_ago(status.get('heartbeat_age_s'))})"))
        lines.append(("daemons", f"{len(nodes)} connected" if nodes else "none connected"))
        for node in nodes:
            since = fmt.format_time(node.get("since"), compact=False) if node.get("since") else "?"
            role = "leader" if node.get("leader") else "standby"
            lines.append(("", f"{node.get('name')}  {role}, connected since {since}"))
    else:
        lines.append(("database", f"{database} (SQLite: a single daemon, no standbys)"))
        if read:
            holder = [n.get("name") for n in status.get("nodes") or []]
            lines.append(("daemon", f"{holder[0]} holds the database" if holder
                          else "none holds the database"))
        else:
            lines.append(("daemon", "the database is not here (give --db or --config): "
                          "asking the daemon"))
        for daemon in status.get("daemons") or []:
            if "error" in daemon:
                lines.append((daemon["url"], f"no answer: {daemon['error']}"))
                continue
            started = fmt.format_time(daemon.get("started_at"), compact=False)
            role = "single daemon" if daemon.get("epoch") == 0 else daemon.get("role")
            lines.append((daemon["url"], f"{role}, epoch {daemon.get('epoch')}, "
                          f"version {daemon.get('version')}, up since {started}, "
                          f"seq {daemon.get('seq')}"))
    width = max(len(label) for label, _ in lines)
    for label, text in lines:
        click.echo(f"{label:<{width}}  {text}")


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = max(seconds, 0.0)
    return f"{seconds:.1f}s ago" if seconds < 60 else f"{present.format_elapsed(seconds)} ago"
