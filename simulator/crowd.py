"""The crowd: fan coroutines spread over processes of their own.

Each process runs one asyncio loop (uvloop) with its share of the fans and
sends the command's process what it needs over a multiprocessing queue:
its progress counts every half second, then every fan's result and its
meter. No Django in these processes: they know the server by its URLs only.
"""

import asyncio
import multiprocessing
import resource
import time
from dataclasses import asdict, dataclass

import uvloop

from simulator.client import Client, Meter
from simulator.fan import FanContext, Progress, run_fan
from simulator.plan import FanPlan
from simulator.stripe_js import stripe_headers

PROGRESS_SECONDS = 0.5


@dataclass(frozen=True)
class CrowdConfig:
    base_url: str
    stripe_url: str
    event_id: int
    slots_per_process: int
    max_wait: float


def start_crowd(*, plans: list[FanPlan], config: CrowdConfig, processes: int) -> tuple[list, multiprocessing.Queue]:
    """Start the crowd processes (spawned: no inherited database connections)."""
    mp = multiprocessing.get_context("spawn")
    out = mp.Queue()
    started = []
    for worker in range(processes):
        share = plans[worker::processes]
        process = mp.Process(target=run_process, args=(worker, share, config, out), daemon=True)
        process.start()
        started.append(process)
    return started, out


def run_process(worker: int, plans: list[FanPlan], config: CrowdConfig, out: multiprocessing.Queue) -> None:
    # Every waiting fan holds a stream open: allow as many sockets as the system lets us.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    uvloop.run(_run(worker, plans, config, out))


async def _run(worker: int, plans: list[FanPlan], config: CrowdConfig, out: multiprocessing.Queue) -> None:
    meter = Meter()
    progress = Progress()
    server = Client(target="server", base_url=config.base_url, meter=meter)
    stripe = Client(target="stripe", base_url=config.stripe_url, meter=meter, headers=stripe_headers())
    ctx = FanContext(
        server=server,
        stripe=stripe,
        meter=meter,
        progress=progress,
        event_id=config.event_id,
        slots=asyncio.Semaphore(config.slots_per_process),
        max_wait=config.max_wait,
    )
    reporter = asyncio.ensure_future(_report_progress(worker, progress, out))
    try:
        results = await asyncio.gather(*(run_fan(ctx, plan) for plan in plans))
    finally:
        reporter.cancel()
        await server.close()
        await stripe.close()
    out.put(("progress", worker, time.time(), progress.as_dict()))
    out.put(("done", worker, [asdict(r) for r in results], meter.as_dict()))


async def _report_progress(worker: int, progress: Progress, out: multiprocessing.Queue) -> None:
    while True:
        out.put(("progress", worker, time.time(), progress.as_dict()))
        await asyncio.sleep(PROGRESS_SECONDS)
