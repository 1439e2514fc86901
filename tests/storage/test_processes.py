"""Several processes on one database: two OS processes reserving from one guild budget at once, gateway slots
shared by every process, jobs claimed first by the process whose shards hold their guild, identify turns."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
import textwrap

from bot.clock import FakeClock
from storage import Database, LeaseGrant, ShardSlice
from tests.fixtures.discord import REPO_ROOT
from tests.storage.helpers import GUILD, lease_of, reserve

# One reserving process: 50 reservations at once, each by another member, against the guild's budget.
RESERVER = textwrap.dedent(
    """
    import asyncio, json, sys
    from storage import Database, NewGeneration, Reservation

    async def main(url, first_user, count):
        async with Database.open(url) as db:
            print("ready", flush=True)
            sys.stdin.readline()  # both processes start reserving at the same moment
            requests = [
                NewGeneration(guild_id=1000, channel_id=2000, user_id=first_user + i, model="sora-2",
                              prompt="race", cost=1)
                for i in range(count)
            ]
            results = await asyncio.gather(*(db.create_generation(r) for r in requests))
            print(json.dumps(sum(isinstance(r, Reservation) for r in results)), flush=True)

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
    """
)


async def _reserver(url: str, first_user: int, count: int) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        RESERVER,
        url,
        str(first_user),
        str(count),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    assert process.stdout is not None
    assert (await asyncio.wait_for(process.stdout.readline(), 30)).strip() == b"ready"
    return process


async def test_a_guild_budget_reserved_from_two_processes_at_once_never_overspends(
    db: Database, database_url: str
) -> None:
    await db.set_default_allowance(GUILD, None)
    await db.set_concurrency(GUILD, per_member=1000, per_guild=None)
    await db.set_budget(GUILD, 7)
    processes = [await _reserver(database_url, 10_000, 50), await _reserver(database_url, 20_000, 50)]
    for process in processes:
        assert process.stdin is not None
        process.stdin.write(b"go\n")
        await process.stdin.drain()
    granted = []
    for process in processes:
        out, _ = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0
        granted.append(json.loads(out.decode().strip().splitlines()[-1]))
    assert sum(granted) == 7  # 100 concurrent reservations from two processes against 7 credits
    report = await db.usage_report(GUILD, until=float("inf"))  # the processes reserved on the real clock
    assert (report.jobs, report.reserved) == (7, 7)


async def test_gateway_slots_are_shared_by_every_process(database_url: str, clock: FakeClock) -> None:
    async with Database.open(database_url, clock=clock) as a, Database.open(database_url, clock=clock) as b:
        ours = [(await reserve(a, user_id=100 + i, lease=LeaseGrant("a", 30.0))).generation_id for i in range(3)]
        theirs = [(await reserve(b, user_id=200 + i, lease=LeaseGrant("b", 30.0))).generation_id for i in range(3)]
        turn_a = await a.arbitrate_slots("a", 2, {gid: 1 for gid in ours})
        turn_b = await b.arbitrate_slots("b", 2, {gid: 1 for gid in theirs})
        assert turn_a.granted == frozenset(ours[:2])  # oldest first: a's jobs came first
        assert turn_b.granted == frozenset()  # the limit is 2 for both processes together
        assert turn_b.positions == {theirs[0]: 2, theirs[1]: 3, theirs[2]: 4}  # one line across processes
        assert await a.slots_in_use() == 2
        # a's first job is done with the gateway: the head of the line — a's third job — goes next.
        grant = await a.get_generation(ours[0])
        assert grant is not None
        assert await a.release_slot(lease_of(grant))
        turn_b = await b.arbitrate_slots("b", 2, {gid: 1 for gid in theirs})
        assert turn_b.granted == frozenset()
        assert turn_b.positions == {theirs[0]: 1, theirs[1]: 2, theirs[2]: 3}
        assert (await a.arbitrate_slots("a", 2, {ours[2]: 1})).granted == {ours[2]}


async def test_a_dead_processs_slots_free_themselves_when_its_leases_end(database_url: str, clock: FakeClock) -> None:
    async with Database.open(database_url, clock=clock) as db:
        dead = (await reserve(db, user_id=1, lease=LeaseGrant("dead", 30.0))).generation_id
        alive = (await reserve(db, user_id=2, lease=LeaseGrant("alive", 300.0))).generation_id
        assert (await db.arbitrate_slots("dead", 1, {dead: 1})).granted == {dead}
        assert (await db.arbitrate_slots("alive", 1, {alive: 1})).positions == {alive: 1}
        clock.advance(31)  # "dead" stopped renewing
        assert (await db.arbitrate_slots("alive", 1, {alive: 1})).granted == {alive}


async def test_a_job_is_claimed_first_by_the_process_whose_shards_hold_its_guild(
    db: Database, clock: FakeClock
) -> None:
    guild_on_1 = 1 << 22  # (guild_id >> 22) % 2 == 1
    assert ShardSlice(2, (1,)).owns(guild_on_1) and not ShardSlice(2, (0,)).owns(guild_on_1)
    job = (await reserve(db, guild_id=guild_on_1, lease=LeaseGrant("dead", 30.0))).generation_id
    clock.advance(31)
    grace = 10.0
    # Shard 0's process sees an expired job of shard 1's guild: it leaves it one grace period to shard 1's process.
    assert await db.claim_expired("shard-0", 30.0, shards=ShardSlice(2, (0,)), foreign_grace=grace) == []
    (claimed,) = await db.claim_expired("shard-1", 30.0, shards=ShardSlice(2, (1,)), foreign_grace=grace)
    assert claimed.id == job and claimed.lease_owner == "shard-1"
    clock.advance(31 + grace)  # shard 1's process died too: after the grace, anyone takes it
    (taken,) = await db.claim_expired("shard-0", 30.0, shards=ShardSlice(2, (0,)), foreign_grace=grace)
    assert taken.id == job and taken.attempt == claimed.attempt + 1


async def test_identify_turns_are_spaced_across_processes(database_url: str) -> None:
    async with Database.open(database_url) as a, Database.open(database_url) as b:
        loop = asyncio.get_running_loop()
        times: list[float] = []

        async def identify(db: Database) -> None:
            await db.identify_turn(0, 0.3)
            times.append(loop.time())

        await asyncio.gather(identify(a), identify(b), identify(a))
        await b.identify_turn(1, 0.3)  # another bucket doesn't wait for bucket 0
        times.sort()
        assert all(later - earlier >= 0.25 for earlier, later in itertools.pairwise(times))
