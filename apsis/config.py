"""The daemon's configuration (`apsis.yaml`, SPEC §1.3); every key optional."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import Diagnostics, JobError, Location
from .lib.strict import Fields, as_bool, as_str
from .lib.timefmt import parse_duration
from .yamlload import load_yaml

MIN_TOKEN_LENGTH = 16  # SPEC §1.11: a shorter token could be guessed by trying

_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2,
               "mib": 1024**2, "g": 1000**3, "gb": 1000**3, "gib": 1024**3}


def parse_size(value: Any) -> int:
    """Bytes from `1048576`, `64MiB`, `10 MB`."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        number = text.rstrip("abcdefghijklmnopqrstuvwxyz")
        unit = text[len(number):]
        if number and unit in _SIZE_UNITS:
            return int(float(number) * _SIZE_UNITS[unit])
    raise ValueError(f"not a size: {value!r} (write bytes, or a number with KiB, MiB, GiB)")


@dataclass
class Config:
    path: Path | None = None
    jobs: Path = Path("jobs")
    # The SQLite file; with a PostgreSQL `database_url`, only the local anchor of the
    # agent's state dir, temp files and the default archive file (all beside it).
    database: Path = Path("apsis.db")
    database_url: str | None = None  # `database: postgresql://...`
    bind: str = "127.0.0.1:5000"
    horizon: float = 86400.0
    since: str = "clock"  # clock | now | a time
    max_age: float | None = None
    max_ahead: int = 100  # runs of one schedule created ahead of now, at most
    retain: float = 90 * 86400.0
    archive: Path | None = None
    # When the archive loop first runs after start-up, and how often after: not
    # settable in apsis.yaml (tests shorten them).
    archive_delay: float = 60.0
    archive_every: float = 6 * 3600.0
    output_max_bytes: int = 64 * 1024**2
    waiting_max_time: float | None = None
    actions: list[Any] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    watch_jobs: bool = True
    log_file: Path | None = None
    log_level: str = "info"
    event_retention: float = 7 * 86400.0
    insecure: bool = False
    remote_ssh: str | None = None  # the ssh command for remote hosts, e.g. "ssh -F cfg"
    remote_agent_dir: str | None = None  # the agent's state dir on remote hosts
    remote_start_timeout: float = 10.0  # a start a host does not answer in time: an error
    # Standby daemons on one PostgreSQL database (SPEC §1.14, `ha:`).
    ha_node: str | None = None  # this daemon's name in the cluster; None: host:port
    ha_advertise: str | None = None  # the URL clients reach this daemon at, when it leads
    ha_takeover: float = 10.0  # a standby takes over within this of the leader's loss
    ha_host_lost: float = 300.0  # a run whose host cannot be reached: error after this

    @property
    def store_target(self) -> str | Path:
        """What `open_store` opens: the PostgreSQL URL, else the SQLite file."""
        return self.database_url or self.database

    def set_database(self, value: str, base: Path = Path(".")) -> None:
        """`database:` (or `--db`): a PostgreSQL URL, or a SQLite path relative to `base`."""
        if value.startswith(("postgresql://", "postgres://")):
            self.database_url = value
            self.database = base / "apsis.db"
        else:
            self.database_url = None
            path = Path(value).expanduser()
            self.database = path if path.is_absolute() else base / path

    @property
    def agent_dir(self) -> Path:
        """The local agent's state: beside the database, so two daemons never share one."""
        return self.database.with_name(self.database.name + ".agent")

    def check_bind(self) -> None:
        """A non-loopback bind needs tokens and TLS, or an explicit `--insecure`."""
        if is_loopback_bind(self.bind) or self.insecure:
            return
        if not self.tokens or not (self.tls_cert and self.tls_key):
            raise ValueError(
                f"refusing to bind to {self.bind}: a non-loopback address needs api.tokens and "
                "api.tls in the config (or --insecure if the network is trusted)"
            )

    def exposure_warning(self) -> str | None:
        """What `--insecure` leaves open on a non-loopback bind, to say at start; else None."""
        if is_loopback_bind(self.bind) or not self.insecure:
            return None
        missing = [name for name, have in (("api.tokens", self.tokens),
                                           ("api.tls", self.tls_cert and self.tls_key)) if not have]
        if not missing:
            return None
        return (f"--insecure: serving on {self.bind} without {' and '.join(missing)}: "
                + ("anyone who can reach it can read and run jobs" if "api.tokens" in missing
                   else "tokens and runs cross the network in clear text"))


def is_loopback_bind(bind: str) -> bool:
    if bind.startswith("unix:"):
        return True
    host = bind.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_bind(bind: str) -> tuple[str, int] | str:
    """(host, port) for TCP, or the socket path for `unix:PATH`."""
    if bind.startswith("unix:"):
        return bind[5:]
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"must be HOST:PORT (a port up to 65535) or unix:PATH, not {bind!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _bind(value: Any) -> str:
    """`bind` as written, once it parses (so that a bad one is a located config error)."""
    bind = as_str(value)
    parse_bind(bind)
    return bind


def load_config(path: Path | None) -> Config:
    """Reads `apsis.yaml`; paths in it are relative to the file.  No file: the embedded default."""
    if path is None:
        return Config()
    diags = Diagnostics()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise JobError(f"cannot read config: {exc.strerror}", Location(str(path))) from None
    node = load_yaml(text, str(path)) or {}
    base = path.parent
    cfg = Config(path=path)
    f = Fields(node, "config", diags, Location(str(path)))

    def rel(value: Any) -> Path:
        p = Path(as_str(value)).expanduser()
        return p if p.is_absolute() else base / p

    with diags.collect():
        cfg.jobs = f.get("jobs", base / "jobs", rel)
    with diags.collect():
        cfg.set_database(f.get("database", "apsis.db", as_str), base)
    with diags.collect():
        cfg.bind = f.get("bind", cfg.bind, _bind)
    for section, handler in (("schedule", _schedule), ("runs", _runs), ("output", _output),
                             ("waiting", _waiting), ("api", _api), ("log", _log),
                             ("events", _events), ("remote", _remote), ("ha", _ha)):
        if f.has(section):
            with diags.collect():
                sf = Fields(f.get(section) or {}, section, diags, f.loc_of(section))
                handler(sf, cfg, rel)
                sf.done()
    if f.has("action"):
        from .action import parse_actions
        from .parse_context import ParseContext

        # Checked like a job's actions; kept as JSON, the form runs carry them in.
        parsed = parse_actions(f.get("action"), f.loc_of("action"), ParseContext(diags=diags))
        cfg.actions = [action.to_jso() for action in parsed]
    with diags.collect():
        cfg.watch_jobs = f.get("watch_jobs", True, as_bool)
    f.done()
    if diags:
        raise JobError("\n".join(str(d) for d in diags.errors))
    return cfg


def _schedule(f: Fields, cfg: Config, rel) -> None:
    cfg.horizon = f.get("horizon", cfg.horizon, parse_duration)
    cfg.since = f.get("since", cfg.since, _since)
    cfg.max_age = f.get("max_age", None, parse_duration)
    cfg.max_ahead = f.get("max_ahead", cfg.max_ahead, _positive_int)


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"expected a whole number of 1 or more, got {value!r}")
    return value


def _since(value: Any) -> str:
    """`clock`, `now` or a time (checked here, so a typo is a config error, not a crash)."""
    from .lib.timefmt import parse_time

    text = as_str(value)
    if text not in ("clock", "now"):
        try:
            parse_time(text)
        except ValueError as exc:
            raise ValueError(f"{exc}; or 'clock' (the default)") from None
    return text


def _runs(f: Fields, cfg: Config, rel) -> None:
    cfg.retain = f.get("retain", cfg.retain, parse_duration)
    cfg.archive = f.get("archive", None, rel)


def _output(f: Fields, cfg: Config, rel) -> None:
    cfg.output_max_bytes = f.get("max_bytes", cfg.output_max_bytes, parse_size)


def _waiting(f: Fields, cfg: Config, rel) -> None:
    value = f.get("max_time", None)
    cfg.waiting_max_time = None if value is None else f.convert("max_time", value, parse_duration)


def _api(f: Fields, cfg: Config, rel) -> None:
    tokens = f.get("tokens", {}) or {}
    if not isinstance(tokens, dict):
        raise JobError("api.tokens must map tokens to read|operate|admin", f.loc_of("tokens"))
    for role in tokens.values():
        if role not in ("read", "operate", "admin"):
            raise JobError(f"token role must be read, operate or admin, not {role!r}", f.loc_of("tokens"))
    short = [k for k in tokens if len(str(k)) < MIN_TOKEN_LENGTH]
    if short:
        # The token itself is never printed: it may be a real, if weak, secret.
        raise JobError(f"api.tokens: {len(short)} token(s) shorter than {MIN_TOKEN_LENGTH} characters, "
                       "which can be guessed; use long random ones, e.g. "
                       "`python3 -c 'import secrets; print(secrets.token_urlsafe(24))'`",
                       f.loc_of("tokens"))
    cfg.tokens = {str(k): str(v) for k, v in tokens.items()}
    if f.has("tls"):
        tf = Fields(f.get("tls"), "api.tls", f.diags, f.loc_of("tls"))
        cfg.tls_cert = tf.require("cert", rel)
        cfg.tls_key = tf.require("key", rel)
        tf.done()


def _log_level(value: Any) -> str:
    level = as_str(value).lower()
    if level not in ("debug", "info", "warning", "error", "critical"):
        raise ValueError(f"must be debug, info, warning, error or critical, not {value!r}")
    return level


def _log(f: Fields, cfg: Config, rel) -> None:
    cfg.log_file = f.get("file", None, lambda v: None if v is None else rel(v))
    cfg.log_level = f.get("level", "info", _log_level)


def _remote(f: Fields, cfg: Config, rel) -> None:
    cfg.remote_ssh = f.get("ssh", None, as_str)
    cfg.remote_agent_dir = f.get("agent_dir", None, as_str)
    cfg.remote_start_timeout = f.get("start_timeout", cfg.remote_start_timeout, parse_duration)


def _ha(f: Fields, cfg: Config, rel) -> None:
    cfg.ha_node = f.get("node", None, as_str)
    cfg.ha_advertise = f.get("advertise", None, as_str)
    cfg.ha_takeover = f.get("takeover", cfg.ha_takeover, _at_least_a_second)
    cfg.ha_host_lost = f.get("host_lost", cfg.ha_host_lost, parse_duration)


def _at_least_a_second(value: Any) -> float:
    seconds = parse_duration(value)
    if seconds < 1:
        raise ValueError(f"must be at least 1s (a standby polls every second), not {value}")
    return seconds


def _events(f: Fields, cfg: Config, rel) -> None:
    cfg.event_retention = f.get("retain", cfg.event_retention, parse_duration)
