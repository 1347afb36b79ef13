"""Secrets scrubbed in one place: whatever a provider says, our key never reaches the
database, the logs, the media folder or a page.

A small fake of all five providers (one threaded http.server on 127.0.0.1, routed by
path, independent of our sandboxes) speaks each provider's documented wire shapes and
ECHOES the key it received in its auth header in every error shape the adapter parses:
4xx and 5xx bodies, a failed task's reason, a result link, and a webhook body. Each
scenario is one job through intake, the worker and the tracker; then everything a team
member, a staff user or an operator could read is searched for the key."""

import io
import json
import logging
import secrets
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import quote, quote_plus, urlsplit

import httpx
import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from billing.models import Membership
from jobs import pipeline
from jobs.models import Job
from jobs.scrub import MASK, ScrubFilter
from jobs.tracker import Tracker
from tests.images import image_bytes
from tests.support import QuietHTTPServer

KEY = "<<KEY>>"  # where the fake puts the key it was sent
KEY_SECRET = "<<KEY_SECRET>>"  # fal's key is "<id>:<secret>": the secret half alone
BASE = "<<BASE>>"  # the fake's own address, for result links

FAILED, SUCCEEDED = Job.State.FAILED, Job.State.SUCCEEDED


def new_keys() -> dict[str, str]:
    """Real-looking keys, new for every test: a key left behind by another test (in the
    SQLite file's free pages, say) can never be mistaken for this test's leak."""
    return {
        "pixazo": secrets.token_hex(16),  # an Azure APIM subscription key
        "pixelcut": "sk_" + secrets.token_hex(20),
        "fal": f"{uuid.uuid4()}:{secrets.token_hex(16)}",  # fal's "<key id>:<secret>"
        "ximilar": secrets.token_hex(20),  # a DRF token
        "apixo": "sk-" + secrets.token_hex(24),
    }


# --- the fake ----------------------------------------------------------------------------
# How each provider authenticates (header, scheme), from the documents.
AUTH = {
    "pixazo": ("Ocp-Apim-Subscription-Key", ""),
    "pixelcut": ("X-API-KEY", ""),
    "fal": ("Authorization", "Key "),
    "ximilar": ("Authorization", "Token "),
    "apixo": ("Authorization", "Bearer "),
}
# (method, path after /<slug>) -> what the request is; a trailing "*" matches any rest.
ROUTES = {
    "pixazo": [
        ("POST", "/upscaler/v1/crystal-upscaler/generate", "submit"),
        ("GET", "/v2/requests/status/*", "poll"),
    ],
    "pixelcut": [("POST", "/v1/upscale", "submit")],
    "fal": [
        ("POST", "/clarityai/crystal-upscaler", "submit"),
        ("GET", "/clarityai/crystal-upscaler/requests/*/status", "poll"),
        ("GET", "/clarityai/crystal-upscaler/requests/*", "result"),
    ],
    "ximilar": [
        ("POST", "/account/v2/request", "submit"),
        ("GET", "/account/v2/request/*", "poll"),
    ],
    "apixo": [
        ("POST", "/generateTask/image-upscaler", "submit"),
        ("GET", "/statusTask/image-upscaler", "poll"),
    ],
}
RESULT_PNG = image_bytes(192, 160)


def route(slug: str, method: str, path: str) -> str:
    for want_method, pattern, kind in ROUTES[slug]:
        if method != want_method:
            continue
        parts, want = path.strip("/").split("/"), pattern.strip("/").split("/")
        if len(parts) == len(want) and all(w in ("*", p) for w, p in zip(want, parts, strict=True)):
            return kind
    return ""


class FakeProviders:
    """Answers what the running scenario scripted, with the markers replaced by the key
    the request carried. It counts every answer that quoted the key (`echoes`) and every
    answer that should have but had no key to quote (`unkeyed`)."""

    def __init__(self):
        self.script: dict[str, dict] = {}
        self.echoes: Counter = Counter()
        self.unkeyed: list[str] = []
        self.keys_seen: dict[str, str] = {}
        self.server = QuietHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def fill(self, slug: str, template) -> str:
        """`template` (JSON-able) as JSON text, quoting the key `slug` was last sent."""
        text = json.dumps(template).replace(BASE, self.url)
        if KEY in text or KEY_SECRET in text:
            key = self.keys_seen.get(slug, "")
            if not key:
                self.unkeyed.append(f"{slug}: {text[:80]}")
            self.echoes[slug] += 1
            text = text.replace(KEY_SECRET, key.rpartition(":")[2]).replace(KEY, key)
        return text

    def answer(self, slug, method, path, headers):
        if path == "/files/out.png":  # a result link; its query (if any) is not checked
            return 200, "image/png", RESULT_PNG
        if path == "/files/gone.png":  # an expired one
            return 404, "text/plain", b"gone"
        kind = route(slug, method, path)
        header, scheme = AUTH.get(slug, ("", ""))
        sent = headers.get(header, "") if header else ""
        if sent.startswith(scheme):
            self.keys_seen[slug] = sent[len(scheme) :]
        scripted = self.script.get(slug, {}).get(kind)
        if scripted is None:
            return 404, "application/json", b'{"detail": "not scripted"}'
        status, body = scripted
        return status, "application/json", self.fill(slug, body).encode()

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def handle_one(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                url = urlsplit(self.path)
                slug, _, rest = url.path.lstrip("/").partition("/")
                status, kind, body = fake.answer(slug, self.command, "/" + rest, self.headers)
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = handle_one

            def log_message(self, *args):  # the test reads its own logs: keep them quiet
                pass

        return Handler


# --- the scenarios -------------------------------------------------------------------------
@dataclass
class Scenario:
    name: str
    submit: tuple
    poll: tuple | None = None
    result: tuple | None = None
    webhook: dict | None = None  # a body we receive at /hooks/... while the job runs
    end: str = FAILED
    quotes_key: bool = True  # False only for the plain success that fills the media folder

    def script(self) -> dict:
        return {"submit": self.submit, "poll": self.poll, "result": self.result}


@dataclass
class Outcome:
    scenario: Scenario
    job: Job
    echoed: int  # answers of the fake that quoted the key during this scenario
    texts: list  # what we stored of it


def results(finished):
    """A job that finishes with a plain result link, and one whose link quotes the key
    and is gone by the time we fetch it: the job fails with that link still stored."""
    ok, gone = finished("out.png"), finished(f"gone.png?token={KEY}")
    ok.name, ok.quotes_key = "result", False
    gone.name, gone.end = "result link quoting the key, gone", FAILED
    return [ok, gone]


PIXAZO_RUNNING = (201, {"id": "pz-1", "status": "starting", "model": "philz1337x/crystal-upscaler"})
FAL_QUEUED = (200, {"request_id": "fal-1", "status": "IN_QUEUE", "queue_position": 0})
XIMILAR_CREATED = (200, {"id": "xi-1", "status": "CREATED"})
APIXO_ACCEPTED = (200, {"code": 200, "message": "success", "data": {"taskId": "ax-1"}})


def ximilar_record(status, code, text, **extra):
    record = {"_status": {"code": code, "text": text}, **extra}
    return (200, {"id": "xi-1", "status": status, "response": {"records": [record]}})


def apixo_task(**data):
    return (200, {"code": 200, "message": "success", "data": {"taskId": "ax-1", **data}})


SCENARIOS = {
    "pixazo": [
        *(
            Scenario(f"submit {s}", (s, {"error": f"Refused for key {KEY}"}))
            for s in (400, 402, 403, 404, 429, 500)
        ),
        # Azure APIM, in front of Pixazo, answers key errors itself in its own shape.
        Scenario("submit 401 (APIM)", (401, {"statusCode": 401, "message": f"Bad key {KEY}."})),
        Scenario("submit 2xx without id", (200, {"error": f"no id for {KEY}"})),
        Scenario(
            "failed at once", (201, {"id": "pz-1", "status": "failed", "error": f"bad {KEY}"})
        ),
        Scenario(
            "poll FAILED", PIXAZO_RUNNING, poll=(200, {"status": "FAILED", "error": f"x {KEY}"})
        ),
        Scenario("poll 500", PIXAZO_RUNNING, poll=(500, {"error": f"down for {KEY}"})),
        Scenario("poll 401", PIXAZO_RUNNING, poll=(401, {"error": f"invalid key {KEY}"})),
        *results(
            lambda file: Scenario(
                "",
                PIXAZO_RUNNING,
                poll=(
                    200,
                    {"status": "COMPLETED", "output": {"media_url": f"{BASE}/pixazo/files/{file}"}},
                ),
                end=SUCCEEDED,
            )
        ),
        Scenario(
            "webhook",
            PIXAZO_RUNNING,
            poll=(200, {"status": "ERROR", "error": f"key {KEY} failed"}),
            webhook={"id": "pz-1", "status": "failed", "error": f"rejected key {KEY}"},
        ),
    ],
    "pixelcut": [
        Scenario(
            "submit 400", (400, {"error": f"bad for {KEY}", "error_code": "invalid_parameter"})
        ),
        # 401 and 403 are worded from the error code: the code itself quotes the key.
        Scenario("submit 401", (401, {"error": f"no {KEY}", "error_code": f"bad_key_{KEY}"})),
        Scenario("submit 403", (403, {"error": f"no {KEY}", "error_code": f"no_credit_{KEY}"})),
        Scenario("submit 404", (404, {"error": f"where is {KEY}", "error_code": "not_found"})),
        *(
            Scenario(f"submit {s}", (s, {"error": f"busy for {KEY}", "error_code": "oops"}))
            for s in (429, 500)
        ),
        *results(
            lambda file: Scenario(
                "", (200, {"result_url": f"{BASE}/pixelcut/files/{file}"}), end=SUCCEEDED
            )
        ),
        # Pixelcut sends no webhooks: a forged one must not bring the key in either.
        Scenario(
            "webhook",
            (200, {"result_url": f"{BASE}/pixelcut/files/out.png"}),
            webhook={"error": f"key {KEY}", "status": f"{KEY}"},
            end=SUCCEEDED,
        ),
    ],
    "fal": [
        Scenario("submit 401", (401, {"detail": f"Invalid key {KEY}"})),
        Scenario("submit 403", (403, {"detail": f"Key {KEY} has no credit"})),
        Scenario(
            "submit 422",
            (422, {"detail": [{"loc": ["body", "image_url"], "msg": f"bad {KEY}", "type": "v"}]}),
        ),
        Scenario("submit 400", (400, {"detail": f"only the secret half: {KEY_SECRET}"})),
        Scenario("submit 404", (404, {"detail": f"unknown app for {KEY}"})),
        *(
            Scenario(f"submit {s}", (s, {"detail": f"busy {KEY}", "error_type": f"t_{KEY}"}))
            for s in (429, 500)
        ),
        Scenario(
            "COMPLETED with an error",
            FAL_QUEUED,
            poll=(200, {"status": "COMPLETED", "error": f"{KEY} crashed", "error_type": KEY}),
        ),
        Scenario("status 500", FAL_QUEUED, poll=(500, {"detail": f"down {KEY}"})),
        Scenario("status 404", FAL_QUEUED, poll=(404, {"detail": f"gone {KEY}"})),
        Scenario("unknown status", FAL_QUEUED, poll=(200, {"status": f"WEIRD {KEY}"})),
        Scenario(
            "result 403",
            FAL_QUEUED,
            poll=(200, {"status": "COMPLETED", "logs": []}),
            result=(403, {"detail": f"not yours {KEY}"}),
        ),
        *results(
            lambda file: Scenario(
                "",
                FAL_QUEUED,
                poll=(200, {"status": "COMPLETED", "logs": []}),
                result=(200, {"images": [{"url": f"{BASE}/fal/files/{file}", "width": None}]}),
                end=SUCCEEDED,
            )
        ),
        Scenario(
            "webhook",
            FAL_QUEUED,
            poll=(200, {"status": "COMPLETED", "error": f"bad {KEY}", "error_type": "x"}),
            webhook={"request_id": "fal-1", "status": "ERROR", "error": f"key {KEY}"},
        ),
    ],
    "ximilar": [
        Scenario("submit 400", (400, {"records": [f"Bad record for {KEY}"]})),
        *(
            Scenario(f"submit {s}", (s, {"detail": f"Invalid token {KEY}."}))
            for s in (401, 402, 403, 404, 429, 500)
        ),
        Scenario("poll FAILED", XIMILAR_CREATED, poll=ximilar_record("FAILED", 500, f"k {KEY}")),
        Scenario("poll ERROR", XIMILAR_CREATED, poll=ximilar_record("ERROR", 500, f"k {KEY}")),
        Scenario("record error", XIMILAR_CREATED, poll=ximilar_record("DONE", 400, f"bad {KEY}")),
        Scenario("poll 404", XIMILAR_CREATED, poll=(404, {"detail": f"gone {KEY}"})),
        Scenario("poll 500", XIMILAR_CREATED, poll=(500, {"detail": f"down {KEY}"})),
        *results(
            lambda file: Scenario(
                "",
                XIMILAR_CREATED,
                poll=ximilar_record(
                    "DONE", 200, "OK", _upscaled_image_url=f"{BASE}/ximilar/files/{file}"
                ),
                end=SUCCEEDED,
            )
        ),
        Scenario(
            "webhook",
            XIMILAR_CREATED,
            poll=ximilar_record("FAILED", 500, f"k {KEY}"),
            webhook={"id": "xi-1", "status": f"FAILED for {KEY}"},
        ),
    ],
    "apixo": [
        *(
            Scenario(f"submit {s}", (s, {"code": s, "message": f"no for {KEY}", "data": None}))
            for s in (400, 401, 402, 403, 404, 429, 500, 502)
        ),
        # An error inside an HTTP 200 envelope.
        Scenario("envelope 401", (200, {"code": 401, "message": f"key {KEY}", "data": None})),
        Scenario(
            "task failed",
            APIXO_ACCEPTED,
            poll=apixo_task(state="failed", failCode=f"E_{KEY}", failMsg=f"bad {KEY}"),
        ),
        Scenario("poll 500", APIXO_ACCEPTED, poll=(500, {"code": 500, "message": f"x {KEY}"})),
        Scenario("poll 404", APIXO_ACCEPTED, poll=(404, {"code": 404, "message": f"x {KEY}"})),
        *results(
            lambda file: Scenario(
                "",
                APIXO_ACCEPTED,
                poll=apixo_task(
                    state="success",
                    resultJson=json.dumps({"resultUrls": [f"{BASE}/apixo/files/{file}"]}),
                ),
                end=SUCCEEDED,
            )
        ),
        Scenario(
            "webhook",
            APIXO_ACCEPTED,
            poll=apixo_task(state="failed", failCode="Unknown", failMsg=f"bad {KEY}"),
            webhook={"code": 200, "data": {"taskId": "ax-1", "state": "failed", "failCode": KEY}},
        ),
    ],
}


# --- driving jobs ------------------------------------------------------------------------
def settle(job: Job, timeout: float = 20.0) -> Job:
    """Drive the tracker until the job has ended, making whatever it scheduled (a retry,
    the next poll) due at once. Waits on the job's state, with a deadline."""
    tracker = Tracker()
    deadline = time.monotonic() + timeout
    try:
        while True:
            job.refresh_from_db()
            if job.state in Job.FINAL_STATES:
                return job
            events = list(job.events.values_list("detail", flat=True))
            assert time.monotonic() < deadline, f"job {job.pk} still {job.state}: {events}"
            Job.objects.filter(pk=job.pk, next_poll_at__isnull=False).update(
                next_poll_at=timezone.now()
            )
            tracker.tick()
    finally:
        tracker.close()


def stored_texts(job: Job) -> list[str]:
    return [
        job.error_code,
        job.error_message,
        job.result_url,
        job.provider_task_id,
        *job.events.values_list("detail", flat=True),
        *job.webhooks.values_list("hint", flat=True),
    ]


def run(scenario: Scenario, slug, fake, submit, live_server) -> Outcome:
    fake.script[slug] = scenario.script()
    before = fake.echoes[slug]
    job = submit(slug, name=f"{scenario.name}.png")
    if scenario.webhook is not None:
        job.refresh_from_db()
        # The provider calls our hook with the key it was sent (the fake's last one).
        body = fake.fill(slug, scenario.webhook)
        url = f"{live_server.url}/hooks/{slug}/{job.pk}/{job.webhook_token}/"
        answer = httpx.post(url, content=body, headers={"Content-Type": "application/json"})
        assert answer.status_code == 200, answer.text
    job = settle(job)
    return Outcome(scenario, job, fake.echoes[slug] - before, stored_texts(job))


# --- looking everywhere -----------------------------------------------------------------
def needles(key: str) -> list[str]:
    """The key as it could be written: as is, URL-encoded, and (fal) its secret half."""
    forms = {key, quote(key, safe=""), quote_plus(key)}
    if ":" in key:
        forms.add(key.rpartition(":")[2])
    return sorted(forms)


def found(text: str, keys) -> bool:
    return any(n in text for key in keys for n in needles(key))


def database_leaks(keys) -> list[str]:
    """Every value of every row of every table, read generically (any backend)."""
    leaks = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            columns = [c[0] for c in cursor.description]
            for row in cursor.fetchall():
                for column, value in zip(columns, row, strict=True):
                    if isinstance(value, bytes | memoryview):
                        value = bytes(value).decode("latin-1")
                    if found(str(value), keys):
                        leaks.append(f"{table}.{column}: {str(value)[:160]}")
    if connection.vendor == "sqlite":
        # The file itself, and its write-ahead log: what a stolen disk would show.
        path = Path(connection.settings_dict["NAME"])
        for part in (path, Path(f"{path}-wal")):
            if part.exists() and found(part.read_bytes().decode("latin-1"), keys):
                leaks.append(f"file {part.name}")
    return leaks


def media_leaks(root, keys) -> list[str]:
    return [
        str(p.relative_to(root))
        for p in Path(root).rglob("*")
        if p.is_file() and found(p.read_bytes().decode("latin-1"), keys)
    ]


def page_text(client, url, **headers) -> str:
    response = client.get(url, **headers)
    assert response.status_code == 200, f"{url} answered {response.status_code}"
    if response.streaming:
        return b"".join(response.streaming_content).decode()
    return response.content.decode()


def page_leaks(client, urls, keys) -> list[str]:
    return [url for url in urls if found(page_text(client, url), keys)]


def member_pages(jobs) -> list[str]:
    urls = ["/", "/providers/", "/spend/", "/spend/export.csv"]
    urls += [f"/jobs/?page={n}" for n in range(1, len(jobs) // 25 + 2)]
    for job in jobs:
        urls += [
            f"/jobs/{job.pk}/",
            f"/jobs/{job.pk}/row/",
            f"/jobs/batch/{job.batch}/compare/",
        ]
    return urls


def htmx_fragments(jobs) -> list[tuple[str, str]]:
    """The fragments the live pages swap in (URL, HX-Target), which render on their own."""
    urls = [("/jobs/", "results")]
    for job in jobs:
        urls += [(f"/jobs/{job.pk}/", "live"), (f"/jobs/batch/{job.batch}/compare/", "compare")]
    return urls


def admin_pages(jobs) -> list[str]:
    urls = ["/admin/"]
    for model in admin.site._registry:
        meta = model._meta
        urls.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
    urls += [reverse("admin:jobs_job_change", args=[job.pk]) for job in jobs]
    return urls


def report(leaks: dict) -> str:
    lines = ["The key leaked:"]
    for where, items in leaks.items():
        if items:
            lines.append(f"  {where} ({len(items)}):")
            lines += [f"    {item}" for item in items[:40]]
    return "\n".join(lines)


@pytest.fixture
def fake():
    with FakeProviders() as providers:
        yield providers


@pytest.fixture
def logs(caplog):
    """Everything logged at DEBUG: what the records carry (caplog, which has no scrub
    filter of its own) and what the console handler of settings.LOGGING writes."""
    caplog.set_level(logging.DEBUG)
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and logger.level:
            caplog.set_level(logging.DEBUG, logger=name)
    console = [
        h
        for h in logging.root.handlers
        if isinstance(h, logging.StreamHandler)
        and any(isinstance(f, ScrubFilter) for f in h.filters)
    ]
    assert console, "settings.LOGGING's console handler with the scrub filter is gone"
    stream = io.StringIO()
    previous = [h.setStream(stream) for h in console]
    yield caplog, stream
    for handler, old in zip(console, previous, strict=True):
        handler.setStream(old)


@pytest.fixture
def real_keys(settings, live_server, fake, sync_tasks, transactional_db):
    keys = new_keys()
    settings.PROVIDER_SETTINGS = {
        slug: {"api_key": key, "base_url": f"{fake.url}/{slug}"} for slug, key in keys.items()
    }
    settings.PUBLIC_BASE_URL = live_server.url
    settings.SUBMIT_MAX_ATTEMPTS = 2  # one retry (its timeline note), then give up
    return keys


@pytest.mark.parametrize("slug", list(SCENARIOS))
def test_a_key_echoed_by_a_provider_appears_nowhere(
    slug, real_keys, fake, submit, live_server, logs, client, owner, team, settings, monkeypatch
):
    # Give up on a poll after two errors in a row rather than eight: the same code path.
    monkeypatch.setattr(pipeline, "MAX_ERRORS_IN_ROW", 2)
    outcomes = [run(s, slug, fake, submit, live_server) for s in SCENARIOS[slug]]
    jobs = [o.job for o in outcomes]

    # Every scenario ran as intended and the fake really put the key in its answers.
    assert fake.keys_seen.get(slug) == real_keys[slug]
    assert fake.unkeyed == []
    for o in outcomes:
        assert o.job.state == o.scenario.end, (o.scenario.name, o.texts)
        assert (o.echoed > 0) == o.scenario.quotes_key, f"{o.scenario.name}: {o.echoed} quotes"

    keys = list(real_keys.values())
    caplog, console = logs
    member = client
    member.force_login(owner)
    staff = get_user_model().objects.create_superuser("root", "root@example.com", "pw-12345")
    # Job pages answer team members only (staff included): staff joins to see them all.
    Membership.objects.create(team=team, user=staff, role=Membership.Role.MEMBER)
    staff_client = type(client)()
    staff_client.force_login(staff)
    leaks = {
        "database": database_leaks(keys),
        "media": media_leaks(settings.MEDIA_ROOT, keys),
        "member pages": page_leaks(member, member_pages(jobs), keys),
        "htmx fragments": [
            url
            for url, target in htmx_fragments(jobs)
            if found(page_text(member, url, HTTP_HX_REQUEST="true", HTTP_HX_TARGET=target), keys)
        ],
        "staff pages": page_leaks(staff_client, member_pages(jobs) + admin_pages(jobs), keys),
        "log records": [line for line in caplog.text.splitlines() if found(line, keys)],
        "console log": [line for line in console.getvalue().splitlines() if found(line, keys)],
    }
    assert not any(leaks.values()), report(leaks)

    # The provider's words are kept, with the key masked: it was in what we stored.
    for o in outcomes:
        if o.scenario.end == FAILED:
            assert any(MASK in text for text in o.texts), (o.scenario.name, o.texts)


# --- the scrubber behind the logs and the task queue -----------------------------------------
def crash_quoting(text):
    """A task that fails with a provider's words in its exception."""
    raise RuntimeError(f"the provider said: {text}")


@pytest.fixture
def one_key(settings):
    key = new_keys()["ximilar"]
    settings.PROVIDER_SETTINGS = {"ximilar": {"api_key": key, "base_url": ""}}
    return key


def test_a_logged_traceback_quoting_a_key_is_scrubbed_whichever_handler_writes_it(one_key, logs):
    caplog, console = logs
    # A handler of its own on a logger that does not propagate (like django.server,
    # whose lines logging's last-resort handler writes): no filter of ours is on it.
    bare = io.StringIO()
    handler = logging.StreamHandler(bare)
    handler.setFormatter(logging.Formatter("%(message)s"))
    quiet = logging.getLogger("tests.not-propagating")
    quiet.addHandler(handler)
    quiet.propagate = False
    try:
        try:
            crash_quoting(one_key)
        except RuntimeError:
            logging.getLogger("jobs.pipeline").exception("submit of job %s crashed", one_key)
            quiet.exception("poll for %s", one_key)
    finally:
        quiet.removeHandler(handler)
    for where, text in {"caplog": caplog.text, "console": console.getvalue()}.items():
        assert f"submit of job {MASK} crashed" in text, where
        assert f"the provider said: {MASK}" in text, where  # the traceback, scrubbed
    assert f"poll for {MASK}" in bare.getvalue()
    assert f"the provider said: {MASK}" in bare.getvalue()
    assert not found(caplog.text + console.getvalue() + bare.getvalue(), [one_key])


def test_a_failed_task_quoting_a_key_is_stored_and_logged_scrubbed(one_key, logs, transactional_db):
    """What the cluster does with a failing task (a worker runs it, the monitor stores and
    logs the failure), in this process."""
    from multiprocessing import Queue, Value

    from django_q.models import Task
    from django_q.monitor import monitor
    from django_q.worker import worker

    caplog, console = logs
    tasks, results = Queue(), Queue()
    tasks.put(
        {
            "id": uuid.uuid4().hex,
            "name": "crash",
            "func": f"{__name__}.crash_quoting",
            "args": (one_key,),
            "kwargs": {},
            "started": timezone.now(),
        }
    )
    tasks.put("STOP")
    worker(tasks, results, Value("f", -1))
    results.put("STOP")
    monitor(results)

    (task,) = Task.objects.all()
    assert task.success is False
    assert f"the provider said: {MASK}" in task.result
    assert not found(str(task.result), [one_key])
    assert not found(caplog.text + console.getvalue(), [one_key])
