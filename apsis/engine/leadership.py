"""Which of the daemons sharing one PostgreSQL database leads (SPEC §1.14).

The leader holds the store's daemon lock on its writer connection and a fencing epoch
(apsis/store/postgres.py). A standby serves reads and streams the events the leader
commits (LISTEN/NOTIFY, with a catch-up read after each reconnect); it tries the lock
every second at most and, once it has it, leads: restore, catch up, schedule, as a
daemon starting alone. A leader whose heartbeat fails (its connection lost, or another
daemon took over) stops at once and starts again as a standby.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .core import Engine

log = logging.getLogger("apsis.leadership")

POLL_SECONDS = 1.0  # the longest a standby waits between two tries of the lock


class Leadership:
    """This daemon's role, as /alive and /metrics show it, and the loops that change it."""

    def __init__(self, engine: Engine, store: Any, *, node: str, advertise: str | None,
                 takeover: float) -> None:
        self._engine = engine
        self._store = store
        self.node = node
        self.advertise = advertise
        self.takeover = takeover
        self.poll = min(POLL_SECONDS, takeover / 3)
        self.role = "standby"
        self.epoch = 0
        self.leader: str | None = None  # the leader's advertise URL, if it gave one
        self.leader_node: str | None = None
        self.failovers = 0  # times this daemon took over from another
        self._new_events = asyncio.Event()

    async def begin(self, since: str | None) -> None:
        """Leads at once if no other daemon does; else serves as a standby that takes
        over when the leader goes."""
        engine = self._engine
        if await self._elect():
            await engine.start(since)
            engine.spawn(self._keep(), "heartbeat")
            return
        log.info("standby: %s leads (epoch %d); serving reads", self.leader_node, self.epoch)
        await engine.serve()
        engine.spawn(self._stand_by(), "standby")

    async def _elect(self) -> bool:
        epoch = await self._store.try_lead(self.node, self.advertise)
        if epoch is None:
            row = await self._store.cluster()
            self.epoch, self.leader, self.leader_node = row["epoch"], row["advertise"], row["leader"]
            return False
        self.role, self.epoch = "leader", epoch
        self.leader, self.leader_node = self.advertise, self.node
        log.info("leading as %s (epoch %d)", self.node, epoch)
        return True

    async def _stand_by(self) -> None:
        engine = self._engine
        feed = [engine.spawn(self._store.watch_events(self._new_events.set), "event-listen"),
                engine.spawn(self._publish_loop(), "event-feed")]
        while True:
            await asyncio.sleep(self.poll)
            try:
                if await self._elect():
                    break
            except Exception as exc:  # the database away: keep serving, keep trying
                log.warning("cannot reach the database to take over: %s", exc)
        for task in feed:
            task.cancel()
        await asyncio.gather(*feed, return_exceptions=True)
        await self._publish_new()
        self.failovers += 1
        log.warning("took over as leader (epoch %d)", self.epoch)
        # From the stored clocks whatever `since` this daemon started with: the gap is
        # not downtime someone chose to skip, and a time would plan runs made already.
        await engine.lead("clock")
        engine.spawn(self._keep(), "heartbeat")

    async def _publish_loop(self) -> None:
        """Publishes what the leader committed, as the leader's own bus would."""
        while True:
            await self._new_events.wait()
            self._new_events.clear()
            try:
                await self._publish_new()
            except Exception as exc:
                log.warning("cannot read new events: %s; retrying", exc)
                await asyncio.sleep(self.poll)
                self._new_events.set()

    async def _publish_new(self) -> None:
        bus = self._engine.bus
        while events := await self._store.events_since(bus.last_seq, limit=1000):
            bus.publish(events)

    async def _keep(self) -> None:
        """The leader's heartbeat: a failed one ends leading at once (fenced, or the
        connection holding the lock is gone, so another daemon may take over)."""
        while True:
            await asyncio.sleep(self.poll)
            try:
                await asyncio.wait_for(self._store.heartbeat(), self.takeover)
            except Exception as exc:
                self.role = "standby"
                self.leader = self.leader_node = None
                self._engine.lose_leadership(str(exc) or type(exc).__name__)
                return
