"""The portal on a database of its own, its processes, and what they cost (/proc).

A Stack is one fresh database (a temporary SQLite file, or a new PostgreSQL database
beside DATABASE_URL), the environment every process of the run gets, and the processes
started on it: the web server (gunicorn with the checked-in config, or runserver), the
supervised cluster and the tracker, as the Procfile names them. Django-side work (seeding,
reading results) runs in `bin/benchmarks/inside.py` subprocesses with the same
environment, so this process never imports the portal.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable  # bin/benchmark re-executes itself with the project's interpreter
INSIDE = str(Path(__file__).with_name("inside.py"))
PROVIDER_KEYS = ("PIXAZO_API_KEY", "PIXELCUT_API_KEY", "FAL_KEY", "XIMILAR_API_TOKEN")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fresh_database(tmp: Path, prefix: str):
    """(DATABASE_URL, drop): a new database for this run, and how to get rid of it."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        return f"sqlite:///{tmp / 'bench.sqlite3'}", lambda: None
    from tests.databases import fresh_postgres

    return fresh_postgres(url, prefix)


class Stack:
    def __init__(self, tmp: Path, prefix: str, **env):
        self.tmp = tmp
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.db_url, self._drop = fresh_database(tmp, prefix)
        # The run's own broker queues (the settings derive every queue from the prefix).
        self.queues = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.env = {
            **os.environ,
            "DATABASE_URL": self.db_url,
            "VAR_DIR": str(tmp),
            "MEDIA_ROOT": str(tmp / "media"),
            "STATIC_ROOT": str(tmp / "static"),
            "PUBLIC_BASE_URL": self.base,
            "BIND": f"127.0.0.1:{self.port}",
            "TASK_QUEUE_PREFIX": self.queues,
            # Production, as README "Running in production" sets it up.
            "DEBUG": "false",
            "SECRET_KEY": "bench-" + uuid.uuid4().hex * 2,
            "CONN_MAX_AGE": "60",
            "SANDBOX_ENABLED": "true",
            "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        for key in (*PROVIDER_KEYS, "APIXO_API_KEY", "DJANGO_SETTINGS_MODULE"):
            self.env.pop(key, None)  # always the sandboxes, always the real settings
        self.procs: dict[str, subprocess.Popen] = {}

    # --- Django-side work ---------------------------------------------------------------
    def manage(self, *args) -> None:
        done = subprocess.run(
            [PY, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True
        )
        if done.returncode:
            raise SystemExit(f"manage.py {' '.join(args)} failed:\n{done.stderr[-3000:]}")

    def inside(self, func: str, **args):
        """Run `inside.<func>(**args)` under Django on this stack; its JSON answer."""
        done = subprocess.run(
            [PY, INSIDE, func],
            cwd=ROOT,
            env={**self.env, "BENCH_ARGS": json.dumps(args)},
            capture_output=True,
            text=True,
        )
        if done.returncode:
            raise SystemExit(f"{func} failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    # --- processes ----------------------------------------------------------------------
    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = (self.tmp / f"{name}.log").open("a")
        proc = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.procs[name] = proc
        return proc

    def start_web(self, server: str = "gunicorn") -> None:
        if server == "gunicorn":  # the Procfile's web line
            argv = [str(Path(PY).with_name("gunicorn")), "-c", "gunicorn.conf.py"]
            self.start("web", [*argv, "upscaler_site.wsgi"])
        else:
            self.start("web", [PY, "manage.py", "runserver", self.env["BIND"], "--noreload"])
        wait_for_port(self.port, self.procs["web"], self.tmp / "web.log")

    def start_workers(self) -> None:
        """The Procfile's worker and tracker lines."""
        self.start("cluster", [PY, "manage.py", "cluster"])
        self.start("tracker", [PY, "manage.py", "track"])

    def stop(self, *names) -> None:
        names = names or list(self.procs)
        for name in names:
            if self.procs[name].poll() is None:
                self.procs[name].send_signal(signal.SIGTERM)
        for name in names:
            proc = self.procs.pop(name)
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def close(self, keep_logs: str = "") -> None:
        self.stop()
        if keep_logs:
            Path(keep_logs).mkdir(parents=True, exist_ok=True)
            for log in self.tmp.glob("*.log"):
                log.replace(Path(keep_logs) / f"{self.queues}-{log.name}")
        self._drop()
        forget_queues(self.env.get("REDIS_URL"), self.queues)


def wait_for_port(port: int, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the web server exited:\n{log.read_text()[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the web server did not start")


def forget_queues(redis_url: str | None, queues: str) -> None:
    """Delete what the run left in Redis under its own queue names."""
    if not redis_url:
        return
    import redis

    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(f"*{queues}*"):
        client.delete(key)


# --- what processes cost, from /proc ---------------------------------------------------
TICK = os.sysconf("SC_CLK_TCK")


def _processes() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, CPU ticks, command line). The ticks are the process's own
    user + system time plus that of the children it has reaped, so summing a tree's
    living processes counts every process that ever ran in it once."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # the name may hold spaces
        ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
        found[int(entry.name)] = (int(fields[1]), ticks, cmd)
    return found


def tree(root: int, table=None) -> dict[int, tuple[int, str]]:
    """pid -> (ticks, command line) of `root` and all its descendants."""
    table = table or _processes()
    members, frontier = {}, [root]
    while frontier:
        pid = frontier.pop()
        if pid in table and pid not in members:
            members[pid] = table[pid][1:]
            frontier += [p for p, (ppid, *_) in table.items() if ppid == pid]
    return members


class CpuMeter:
    """CPU seconds used by process trees between `start()` and `stop()`."""

    def __init__(self, roots: dict[str, int]):
        self.roots = roots

    def _read(self):
        table = _processes()
        return {name: tree(pid, table) for name, pid in self.roots.items()}

    def start(self):
        self.before = self._read()
        return self

    def stop(self) -> dict:
        after = self._read()
        out = {}
        for name, members in after.items():
            used = sum(t for t, _ in members.values()) - sum(
                t for t, _ in self.before[name].values()
            )
            kinds = sorted({describe(cmd) for _, cmd in members.values()})
            out[name] = {"seconds": used / TICK, "processes": len(members), "kinds": kinds}
        return out


def describe(cmd: str) -> str:
    """A short name for a process of ours, from its command line."""
    for marker in ("qcluster", "runserver", "cluster", "track"):
        if f"manage.py {marker}" in cmd:
            return f"manage.py {marker}"
    if "gunicorn" in cmd:
        return "gunicorn"
    if "multiprocessing" in cmd or "django_q" in cmd:
        return "django-q worker"
    return cmd.split(" ")[0].rsplit("/", 1)[-1]


class Machine:
    """The whole machine's CPU use (all cores, everyone's processes) over a stretch."""

    def __init__(self):
        self.cores = os.cpu_count() or 1
        self.before = self._stat()

    @staticmethod
    def _stat() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = values[3] + values[4]  # idle + iowait
        return sum(values) - idle, sum(values)

    def busy(self) -> float:
        """Cores busy on average since this object was made (0..cores)."""
        (busy0, total0), (busy1, total1) = self.before, self._stat()
        return self.cores * (busy1 - busy0) / max(total1 - total0, 1)


def load_average() -> str:
    return " / ".join(Path("/proc/loadavg").read_text().split()[:3])
