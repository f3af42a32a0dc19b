"""Agents on other hosts, reached through the system's OpenSSH client (SPEC §1.9).

One `AgentClient` per (host, user, state dir), connected on first use and kept for the
daemon's life: the client reconnects by itself when ssh drops. A failed first
connection is not kept, so the next run (or the reconcile loop) tries again. Host
groups from `.apsis-jobs.yaml` are resolved to one host here.

After a takeover (SPEC §1.14) the pool also holds the local agent of the daemon that
led before: on this host, connected as the daemon's own (host None), or on its host
over ssh, at the state dir that daemon used.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import os
import random
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..agent.client import (
    DEFAULT_REMOTE_STATE_DIR,
    AgentClient,
    local_connect_command,
    ssh_connect_command,
)

log = logging.getLogger("apsis.hosts")

# (host, user, state dir): host None is this host; user None is ssh's own default; state
# dir None is `RemoteSettings.state_dir`.
HostKey = tuple[str | None, str | None, str | None]

# On the command line, so they win over ~/.ssh/config: an unreachable host must turn
# into an error run in seconds, and a dead connection must be noticed (then redone).
SSH_OPTIONS = (
    "-o", "ConnectTimeout=10",
    "-o", "ServerAliveInterval=15",
    "-o", "ServerAliveCountMax=3",
)


@dataclass(frozen=True, slots=True)
class RemoteSettings:
    """How to reach remote agents: the ssh command and the agent's state dir there."""

    ssh: tuple[str, ...] = ("ssh",)
    state_dir: str = DEFAULT_REMOTE_STATE_DIR
    idle_timeout: float | None = None
    # How long a host has to answer a start: a silent partition is an error in seconds,
    # not after ssh's keep-alive gives up (a minute).
    start_timeout: float = 10.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> RemoteSettings:
        """`APSIS_SSH` (e.g. `ssh -F /etc/apsis/ssh_config`), `APSIS_REMOTE_AGENT_DIR`,
        and `APSIS_AGENT_IDLE_TIMEOUT`, which the local agent uses too."""
        ssh = tuple(shlex.split(environ.get("APSIS_SSH", ""))) or ("ssh",)
        idle = environ.get("APSIS_AGENT_IDLE_TIMEOUT")
        return cls(
            ssh=ssh,
            state_dir=environ.get("APSIS_REMOTE_AGENT_DIR") or DEFAULT_REMOTE_STATE_DIR,
            idle_timeout=float(idle) if idle else None,
        )


    @classmethod
    def from_config(cls, config: Any) -> RemoteSettings:
        """`remote.ssh`, `remote.agent_dir` and `remote.start_timeout` from apsis.yaml,
        else the environment."""
        settings = cls.from_env()
        if getattr(config, "remote_ssh", None):
            settings = dataclasses.replace(settings, ssh=tuple(shlex.split(config.remote_ssh)))
        if getattr(config, "remote_agent_dir", None):
            settings = dataclasses.replace(settings, state_dir=config.remote_agent_dir)
        if getattr(config, "remote_start_timeout", None):
            settings = dataclasses.replace(settings, start_timeout=config.remote_start_timeout)
        return settings


class HostPicker:
    """Turns a program's `host:` into a host: a group name picks one of its hosts."""

    def __init__(self) -> None:
        self._turns: dict[str, itertools.count[int]] = {}

    def pick(self, name: str, groups: Mapping[str, Mapping[str, Any]]) -> tuple[str, str | None]:
        """(host, group name or None). Round-robin rotates per group, in memory."""
        group = groups.get(name)
        if group is None:
            return name, None
        hosts = list(group["hosts"])
        if group.get("type", "round-robin") == "random":
            return random.choice(hosts), name
        turn = next(self._turns.setdefault(name, itertools.count()))
        return hosts[turn % len(hosts)], name


class HostAgents:
    """The pool of agent connections but the daemon's own, created lazily and closed at stop."""

    def __init__(
        self,
        settings: RemoteSettings,
        on_connect: Callable[[AgentClient], None],
        *,
        connect_timeout: float = 30.0,
    ) -> None:
        self.settings = settings
        self._on_connect = on_connect  # the runner follows the new client's exits
        self._connect_timeout = connect_timeout
        self._clients: dict[HostKey, AgentClient] = {}
        self._connecting: dict[HostKey, asyncio.Task[AgentClient]] = {}
        self._closed = False

    def connected(self, host: str | None, user: str | None, *,
                  state_dir: str | None = None) -> AgentClient | None:
        """The client for (host, user) if one was ever connected; never connects."""
        return self._clients.get((host, user, state_dir))

    async def get(self, host: str | None, user: str | None, *,
                  state_dir: str | None = None) -> AgentClient:
        """The client for (host, user) and the agent at `state_dir` there, connecting
        first if need be; host None: the agent at `state_dir` on this host.

        Raises AgentConnectionError (the message has ssh's stderr tail) if ssh cannot
        reach the host, or ValueError for a host name ssh would take as an option.
        Concurrent callers for one host share one connection attempt.
        """
        key = (host, user, state_dir)
        client = self._clients.get(key)
        if client is not None:
            return client
        if self._closed:
            raise RuntimeError("the remote agent pool is closed")
        task = self._connecting.get(key)
        if task is None:
            task = asyncio.ensure_future(self._connect(key))
            self._connecting[key] = task
            task.add_done_callback(lambda _: self._connecting.pop(key, None))
        # Shielded: one caller giving up must not cancel the others' attempt.
        return await asyncio.shield(task)

    async def _connect(self, key: HostKey) -> AgentClient:
        host, user, state_dir = key
        settings = self.settings
        if host is None:
            assert state_dir is not None, "this host's other agents are known by their dir"
            argv, preamble = local_connect_command(state_dir, idle_timeout=settings.idle_timeout), b""
        else:
            argv, preamble = ssh_connect_command(
                host,
                user=user,
                state_dir=state_dir or settings.state_dir,
                idle_timeout=settings.idle_timeout,
                ssh=settings.ssh,
                ssh_options=SSH_OPTIONS,
            )
        client = AgentClient(connect_timeout=self._connect_timeout)
        await client.connect(argv, preamble)
        if self._closed:
            await client.close()
            raise RuntimeError("the remote agent pool is closed")
        log.info("connected to the agent on %s%s (%s, %s)", f"{user}@" if user else "",
                 host or "this host", client.hello.get("host", "?"), client.hello.get("state_dir"))
        self._clients[key] = client
        self._on_connect(client)
        return client

    async def close(self) -> None:
        """Drops every connection; remote agents and their programs carry on."""
        self._closed = True
        pending = list(self._connecting.values())
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        clients, self._clients = list(self._clients.values()), {}
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
