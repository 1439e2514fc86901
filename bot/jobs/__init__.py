"""Jobs: durable, leased rows in the database, each run by a small sequencer in whichever process holds it.

- `model`: the validated request (`JobSpec`) and one attempt's state (`Job`)
- `slots`: the local queue in front of the gateway
- `origins`: where a request came from (an interaction, a reply), and so how to answer it
- `runner`: the sequence of one attempt, against narrow interfaces (`ports`) and `discord_side`
- `leases`: the heartbeat: renew, notice lost jobs, claim expired ones (start-up = takeover), sweep
- `manager`: submit, cancel, adopt claimed jobs, close
"""

from bot.jobs.manager import JobManager
from bot.jobs.model import Job, JobSpec, Start
from bot.jobs.origins import InteractionOrigin, Origin, ReplyOrigin, ThreadOrigin

__all__ = ["InteractionOrigin", "Job", "JobManager", "JobSpec", "Origin", "ReplyOrigin", "Start", "ThreadOrigin"]
