"""`apsisctl serve`: configuration from file and flags, then the daemon."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

from .common import UserError
from .exitcodes import ExitStatus


def run_serve(config_path: str | None, jobs: str | None, db: str | None, bind: str | None,
              since: str | None, insecure: bool) -> int:
    from apsis.config import load_config, parse_bind
    from apsis.daemon import serve, setup_logging
    from apsis.errors import JobError
    from apsis.lib.timefmt import parse_time

    try:
        config = load_config(Path(config_path) if config_path else None)
    except JobError as exc:
        raise UserError(f"bad config: {exc}", "fix the file; every key is optional") from None
    if jobs:
        config.jobs = Path(jobs)
    if db:
        config.set_database(db)
    if bind:
        try:
            parse_bind(bind)
        except ValueError as exc:
            raise UserError(f"--bind {exc}") from None
        config.bind = bind
    config.insecure = insecure
    if since and since not in ("now", "clock"):
        try:
            since = parse_time(since).isoformat()
        except ValueError as exc:
            raise UserError(f"--since: {exc}") from None
    try:
        config.check_bind()
    except ValueError as exc:
        raise UserError(str(exc), "bind to 127.0.0.1, or configure api.tokens and api.tls") from None
    if not config.jobs.is_dir():
        raise UserError(f"no jobs directory at {config.jobs}",
                        "create it, or point --jobs (or `jobs:` in the config) at one")
    # Files the daemon creates: a missing folder is the user's to fix, not a traceback.
    for path, where in ((None if config.database_url else config.database,
                         "another with --db (`database:` in the config)"),
                        (config.log_file, "another `log.file` in the config")):
        if path is not None and not path.parent.is_dir():
            raise UserError(f"no folder {path.parent} for {path.name}", f"create it, or choose {where}")
    for path in (config.tls_cert, config.tls_key):
        if path is not None and not path.is_file():
            raise UserError(f"no file {path} for api.tls", "check api.tls.cert and api.tls.key in the config")
    setup_logging(config)
    from apsis.daemon import RESTART, ListenError
    from apsis.store.errors import StoreError

    try:
        code = asyncio.run(serve(config, since=since))
    except (StoreError, ListenError) as exc:  # locked, full, unreachable
        raise UserError(str(exc), code=ExitStatus.FAILURE) from None
    except KeyboardInterrupt:
        return ExitStatus.INTERRUPTED
    if code == RESTART:
        # `apsisctl shutdown --restart`: the same command again, in the same process, so
        # a supervisor (or a terminal) keeps the daemon it started.
        logging.getLogger("apsis").info("restarting")
        os.execv(sys.executable, sys.orig_argv)
    return code
