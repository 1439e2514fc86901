"""Small builders shared by the storage tests."""

from __future__ import annotations

from typing import Any

from storage import Database, Generation, Lease, LeaseGrant, NewGeneration, QuotaDenied, Reservation

GUILD = 1000
OTHER_GUILD = 1001
CHANNEL = 2000
OTHER_CHANNEL = 2001
THREAD = 2100
ALICE = 3001
BOB = 3002
CAROL = 3003
ROLE_FAN = 4001
ROLE_VIP = 4002


def new_generation(**overrides: Any) -> NewGeneration:
    values: dict[str, Any] = {
        "guild_id": GUILD,
        "channel_id": CHANNEL,
        "user_id": ALICE,
        "model": "sora-2",
        "prompt": "a cat surfing a wave at sunset",
        "cost": 1,
        "seconds": 10,
        "size": "1280x720",
        "orientation": "landscape",
        "api_format": "chat",
    }
    values.update(overrides)
    return NewGeneration(**values)


def lease_of(generation: Generation, owner: str | None = None) -> Lease:
    return Lease(generation.id, generation.attempt, owner or generation.lease_owner or "")


async def reserve(
    db: Database,
    *,
    role_ids: tuple[int, ...] = (),
    is_admin: bool = False,
    lease: LeaseGrant | None = None,
    **overrides: Any,
) -> Reservation:
    result = await db.create_generation(
        new_generation(**overrides), role_ids=role_ids, is_admin=is_admin, lease=lease
    )
    assert isinstance(result, Reservation), result
    return result


async def deny(
    db: Database, *, role_ids: tuple[int, ...] = (), is_admin: bool = False, **overrides: Any
) -> QuotaDenied:
    result = await db.create_generation(new_generation(**overrides), role_ids=role_ids, is_admin=is_admin)
    assert isinstance(result, QuotaDenied), result
    return result
