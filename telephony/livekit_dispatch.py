"""LiveKit rooms handed to agent workers by LiveKit's webhooks, each served exactly once.

LiveKit posts a webhook when a room starts and when a participant joins (``room_started``,
``participant_joined``; JSON signed with the API key: a JWT in ``Authorization`` whose
``sha256`` claim is the body's hash, checked with ``livekit-api``'s ``WebhookReceiver``).
``POST /livekit/webhook`` (app/routes_livekit_webhook.py, any ``taina serve`` process behind
the balancer) verifies it and *announces* the room in Redis:

* ``{prefix}lk:wanted`` — hash of the rooms that want an agent (room -> announced at);
* ``{prefix}lk:dispatch`` — list the workers block on (``BLPOP``): each announcement wakes
  one worker at once;
* ``{prefix}lk:claim:{room}`` — the claim: ``SET NX PX lease`` with the worker's id, taken only
  while the room is still announced (one Lua script). Only the worker holding it serves the
  room; it renews the claim every ``lease / 3`` while the call lasts and removes claim and
  announcement when the call ends.

A worker that dies stops renewing: its claims lapse after the lease, and the other workers,
which look over ``lk:wanted`` every ``lease / 3``, claim those rooms and join them (the caller
hears the greeting again from the new worker). No worker ever lists LiveKit's rooms.
"""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger("taina.livekit.dispatch")

DISPATCH_EVENTS = frozenset({"room_started", "participant_joined"})

# KEYS = claim keys; ARGV[1] = worker id, ARGV[2] = lease ms. Renews the claims still held by
# this worker; returns, in order, 1 for each renewed and 0 for each lost.
_RENEW = """
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"""

# KEYS[1] = claim key, KEYS[2] = wanted hash; ARGV = worker id, room, lease ms. A room is
# claimed only while it is still announced: a worker that read the announcements just before
# another worker finished the call must not start it again.
_CLAIM = """
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 0 then
  return 0
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[3]) then
  return 1
end
return 0
"""

# KEYS[1] = claim key, KEYS[2] = wanted hash; ARGV[1] = worker id, ARGV[2] = room.
_DONE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('HDEL', KEYS[2], ARGV[2])
  return 1
end
return 0
"""


class RoomDispatch:
    """The Redis side of dispatch, shared by the webhook route and the workers."""

    def __init__(self, client: Any, prefix: str, *, lease_s: float = 10.0) -> None:
        self._client = client
        self._prefix = prefix
        self.lease_s = max(float(lease_s), 0.5)
        self._wanted = f"{prefix}lk:wanted"
        self._queue = f"{prefix}lk:dispatch"
        self._renew = client.register_script(_RENEW)
        self._done = client.register_script(_DONE)
        self._claim = client.register_script(_CLAIM)

    def _claim_key(self, room: str) -> str:
        return f"{self._prefix}lk:claim:{room}"

    async def announce(self, room: str) -> bool:
        """A room wants an agent (from a verified webhook). False: it was already known
        (``participant_joined`` after ``room_started``), no second wake-up."""
        new = await self._client.hsetnx(self._wanted, room, str(time.time()))
        if new:
            await self._client.rpush(self._queue, room)
        return bool(new)

    async def forget(self, room: str) -> None:
        """``room_finished``: nobody needs to take this room over."""
        await self._client.hdel(self._wanted, room)

    async def next_room(self, timeout_s: float) -> str | None:
        """The next announced room, or None after ``timeout_s``."""
        got = await self._client.blpop([self._queue], timeout=max(timeout_s, 0.01))
        if got is None:
            return None
        value = got[1]
        return value.decode() if isinstance(value, bytes) else str(value)

    async def wanted(self) -> list[str]:
        names = await self._client.hkeys(self._wanted)
        return [n.decode() if isinstance(n, bytes) else str(n) for n in names]

    async def claim(self, room: str, worker: str) -> bool:
        ok = await self._claim(
            keys=[self._claim_key(room), self._wanted],
            args=[worker, room, int(self.lease_s * 1000)],
        )
        return bool(int(ok))

    async def holder(self, room: str) -> str | None:
        value = await self._client.get(self._claim_key(room))
        return value.decode() if isinstance(value, bytes) else value

    async def renew(self, rooms: list[str], worker: str) -> list[str]:
        """Renew this worker's claims; returns the rooms whose claim was lost."""
        if not rooms:
            return []
        keys = [self._claim_key(r) for r in rooms]
        kept = await self._renew(keys=keys, args=[worker, int(self.lease_s * 1000)])
        return [r for r, k in zip(rooms, kept, strict=True) if not int(k)]

    async def release(self, room: str, worker: str) -> None:
        """This worker stops without finishing the call: the room stays announced and
        another worker claims it at its next sweep."""
        key = self._claim_key(room)
        if await self.holder(room) == worker:
            await self._client.delete(key)

    async def done(self, room: str, worker: str) -> None:
        """The call in ``room`` ended: release the claim and the announcement."""
        await self._done(keys=[self._claim_key(room), self._wanted], args=[worker, room])


def webhook_event(body: str, auth: str | None, api_key: str, api_secret: str) -> Any:
    """The verified ``WebhookEvent``; raises ``PermissionError`` on a bad signature or body."""
    from livekit import api

    if not auth:
        raise PermissionError("no Authorization header")
    token = auth.split(" ", 1)[1] if auth.lower().startswith("bearer ") else auth
    receiver = api.WebhookReceiver(api.TokenVerifier(api_key, api_secret))
    try:
        return receiver.receive(body, token)
    except Exception as exc:  # expired, wrong key, hash mismatch, not a WebhookEvent
        raise PermissionError(str(exc)) from exc
