"""`--jobs N --latency S`: jobs through the APIXO sandbox, by a plain asyncio client and
by the portal, on the same web server, machine and sandbox."""

import asyncio
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.pages import percentile
from benchmarks.stack import CpuMeter, Machine, Stack, load_average

APIXO = "/sandbox/apixo"
SUBMITS_IN_FLIGHT = 8  # each submit makes the sandbox fetch the input from the same server
CALLS_IN_FLIGHT = 32  # as the tracker's TRACKER_CONCURRENCY


def first_poll(polls: int) -> float:
    # The portal's own pace for a sandbox (jobs.providers.base): the same for both.
    return 1.0 if polls == 0 else min(1.0 + 0.5 * polls, 3.0)


async def direct_client(base: str, key: str, urls: list[str], resolution: str) -> list[dict]:
    """Submit every input, poll each task until it ends, download each result."""
    submits, calls = asyncio.Semaphore(SUBMITS_IN_FLIGHT), asyncio.Semaphore(CALLS_IN_FLIGHT)
    auth = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=CALLS_IN_FLIGHT)

    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as http:

        async def one(url: str) -> dict:
            try:
                return await attempt(url)
            except Exception as exc:  # noqa: BLE001 - counted as a failure, with its reason
                return {"task": "", "ok": False, "error": repr(exc)[:90]}

        async def attempt(url: str) -> dict:
            start = time.time()
            body = {
                "request_type": "async",
                "input": {
                    "mode": "image-to-image",
                    "image_urls": [url],
                    "resolution": resolution,
                    "output_format": "jpg",
                },
            }
            async with submits, calls:
                answer = await http.post(
                    f"{APIXO}/generateTask/image-upscaler", json=body, headers=auth
                )
            task = answer.json()["data"]["taskId"]
            polls = 0
            while True:
                await asyncio.sleep(first_poll(polls))
                polls += 1
                async with calls:
                    answer = await http.get(
                        f"{APIXO}/statusTask/image-upscaler", params={"taskId": task}, headers=auth
                    )
                data = answer.json()["data"]
                if data["state"] in ("success", "failed"):
                    break
            seen = time.time()
            if data["state"] == "failed":
                return {"task": task, "ok": False, "error": data.get("failMsg")}
            async with calls:
                result = await http.get(json.loads(data["resultJson"])["resultUrls"][0])
            return {
                "task": task,
                "ok": result.status_code == 200,
                "start": start,
                "seen": seen,
                "done": time.time(),
                "bytes": len(result.content),
            }

        return await asyncio.gather(*(one(url) for url in urls))


def run_direct(stack: Stack, count: int, resolution: str) -> dict:
    parked = stack.inside("direct_inputs", count=count, resolution=resolution)
    machine = Machine()
    cpu = CpuMeter({"web (sandbox)": stack.procs["web"].pid}).start()
    own = resource.getrusage(resource.RUSAGE_SELF)
    results = asyncio.run(direct_client(stack.base, parked["key"], parked["urls"], resolution))
    mine = resource.getrusage(resource.RUSAGE_SELF)
    used = cpu.stop()
    used["client"] = {
        "seconds": mine.ru_utime + mine.ru_stime - own.ru_utime - own.ru_stime,
        "processes": 1,
        "kinds": ["bin/benchmark (asyncio + httpx)"],
    }
    done = stack.inside("direct_done", jobs=parked["jobs"], tasks=[r["task"] for r in results])
    ok = [r for r in results if r["ok"]]
    failures = {}
    for r in results:
        if not r["ok"]:
            reason = r.get("error") or "no result"
            failures[reason] = failures.get(reason, 0) + 1
    seconds = max(r["done"] for r in ok) - min(r["start"] for r in ok) if ok else 0
    return {
        "jobs": count,
        "succeeded": len(ok),
        "failed": count - len(ok),
        "unfinished": 0,
        "seconds": seconds,
        "notice": [r["seen"] - done[r["task"]] for r in ok if r["task"] in done],
        "stored": [r["done"] - done[r["task"]] for r in ok if r["task"] in done],
        "cpu": used,
        "busy": machine.busy(),
        "cores": machine.cores,
        "load": load_average(),
        "failures": failures,
    }


def run_portal(stack: Stack, args) -> dict:
    stack.start_workers()
    ready = stack.inside("wait_ready", timeout=90)
    if not ready["ready"]:
        print(f"  (the cluster or the tracker did not report in: {ready['heartbeats']})")
    machine = Machine()
    roots = {"cluster": "cluster", "tracker": "tracker", "web (portal + sandbox)": "web"}
    cpu = CpuMeter({label: stack.procs[name].pid for label, name in roots.items()})
    cpu.start()
    result = stack.inside(
        "portal_run",
        count=args.jobs,
        provider=args.provider,
        options={"resolution": args.resolution, "output_format": "jpg"}
        if args.provider == "apixo"
        else {},
        timeout=args.timeout,
    )
    result.update(cpu=cpu.stop(), busy=machine.busy(), cores=machine.cores, load=load_average())
    return result


def run(args) -> None:
    backend = "PostgreSQL" if os.environ.get("DATABASE_URL") else "SQLite"
    broker = "Redis" if os.environ.get("REDIS_URL") else "ORM"
    print(
        f"{args.jobs} jobs, {args.provider} sandbox "
        f"({args.resolution + ' JPEG' if args.provider == 'apixo' else 'default options'}), "
        f"{args.latency:g} s "
        f"latency, {backend} + {broker} broker, web: {args.server}; "
        f"load average before: {load_average()}",
        flush=True,
    )
    direct = None
    for n, mode in enumerate(args.modes.split(",")):
        env = {
            "SANDBOX_LATENCY": str(args.latency),
            "SECURE_SSL_REDIRECT": "false",
            "WEBHOOKS_ENABLED": "true" if mode == "webhooks" else "false",
        }
        if args.workers:
            env.update(Q_WORKERS=str(args.workers), Q_FINISH_WORKERS=str(args.workers))
        with tempfile.TemporaryDirectory(prefix="upscaler-bench-") as tmp:
            stack = Stack(Path(tmp), args.name_prefix, **env)
            try:
                stack.manage("migrate", "--noinput")
                stack.start_web(args.server.split(",")[0])
                if n == 0 and args.provider == "apixo":
                    direct = run_direct(stack, args.jobs, args.resolution)
                    show("direct asyncio client (httpx, same sandbox and web server)", direct)
                portal = run_portal(stack, args)
                show(f"portal, {mode}", portal, direct)
            finally:
                stack.close(args.keep_logs)


def show(title: str, r: dict, direct: dict | None = None) -> None:
    rate = r["succeeded"] / max(r["seconds"], 1e-9)
    print(f"\n{title}:")
    print(
        f"  succeeded {r['succeeded']}/{r['jobs']}  failed {r['failed']}  "
        f"unfinished {r['unfinished']}"
    )
    for failure, times in r["failures"].items():
        print(f"    {times} x {failure}")
    ratio = ""
    if direct:
        other = direct["succeeded"] / max(direct["seconds"], 1e-9)
        ratio = f"; {rate / other:.2f}x the direct client's {other:.2f} jobs/s"
    print(
        f"  {r['seconds']:.1f} s from the first submit to the last result: {rate:.2f} jobs/s{ratio}"
    )
    for what, key in (("noticed", "notice"), ("stored", "stored")):
        values = r[key]
        if values:
            print(
                f"  provider done -> {what}: p50 {percentile(values, 0.5):.1f} s, "
                f"p95 {percentile(values, 0.95):.1f} s, max {max(values):.1f} s"
            )
    count = max(r["succeeded"], 1)
    for name, used in r["cpu"].items():
        print(
            f"  CPU {name}: {used['seconds']:.1f} s, {1000 * used['seconds'] / count:.0f} ms "
            f"per job ({used['processes']} processes now: {', '.join(used['kinds'])})"
        )
    if "cluster" in r["cpu"]:
        workers = r["cpu"]["cluster"]["seconds"] + r["cpu"]["tracker"]["seconds"]
        print(
            f"  CPU of the portal's workers (cluster tree + tracker): "
            f"{1000 * workers / count:.0f} ms per job"
        )
    print(
        f"  machine: {r['busy']:.1f} of {r['cores']} cores busy on average (everyone's "
        f"processes), load average {r['load']}"
    )
