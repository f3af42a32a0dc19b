"""`user:` without `host:`: the program runs on this machine as that user, as in Apsis,
through `sudo -n -u USER`.

The environment is the one a login of that user starts with (`HOME`, `USER`, `LOGNAME`,
`SHELL`, a standard `PATH`), plus the job's `env` and the `APSIS_*` variables: `env -i`
under sudo sets exactly those, so nothing of the daemon's own environment leaks in and
no sudoers `SETENV` right is needed. The run starts in the user's home unless the job
gives a `cwd`. Without a terminal sudo leaves the program in the agent's process group,
so the stop signal and SIGKILL reach it.

Whether sudo lets the daemon's user act as USER is asked first (`sudo -n -u USER true`):
a refusal makes the run an error with sudo's own words, never a failure that a retry
would repeat.
"""

from __future__ import annotations

import asyncio
import pwd
import subprocess

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
CHECK_SECONDS = 10.0


class SudoRefused(Exception):
    """The program cannot run as that user; the message says why (sudo's own words)."""


def login_env(user: str) -> dict[str, str]:
    """The environment a login of `user` starts with."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise SudoRefused(f"there is no user {user!r} on this machine") from None
    return {"HOME": entry.pw_dir, "USER": user, "LOGNAME": user,
            "SHELL": entry.pw_shell or "/bin/sh", "PATH": DEFAULT_PATH}


async def check_sudo(user: str) -> None:
    """Raises SudoRefused unless `sudo -n -u USER` runs a command without a password."""
    try:
        proc = await asyncio.create_subprocess_exec(
            "sudo", "-n", "-u", user, "--", "true", stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except FileNotFoundError:
        raise SudoRefused("sudo is not installed on this machine: install it to run a program "
                          f"as {user!r} (or give the program a host)") from None
    try:
        _, err = await asyncio.wait_for(proc.communicate(), CHECK_SECONDS)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise SudoRefused(f"sudo -n -u {user} did not answer in {CHECK_SECONDS:g}s") from None
    if proc.returncode != 0:
        said = err.decode(errors="replace").strip() or f"exit status {proc.returncode}"
        raise SudoRefused(f"sudo refused to run the program as {user!r}: {said}")


async def as_user(user: str, argv: list[str], env: dict[str, str],
                  cwd: str | None) -> tuple[list[str], str]:
    """The argv that runs `argv` as `user` with `env` over the user's login environment,
    and the directory it starts in. Raises SudoRefused."""
    login = login_env(user)
    bad = sorted(name for name in env if "=" in name or not name)
    if bad:
        raise SudoRefused(f"env names cannot hold '=' or be empty: {', '.join(map(repr, bad))}")
    await check_sudo(user)
    assignments = [f"{name}={value}" for name, value in {**login, **env}.items()]
    return ["sudo", "-n", "-u", user, "--", "/usr/bin/env", "-i", *assignments, *argv], (
        cwd or login["HOME"])
