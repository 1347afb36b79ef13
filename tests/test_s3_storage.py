"""Media in an S3-compatible bucket (STORAGE_URL), against a real S3 server over real HTTP.

The server is moto's, started by this module as a subprocess on a free loopback port
(installed with the dev extra). Every test gets a bucket of its own, so listing it shows
exactly what that test stored. Nothing here reaches AWS: the endpoint is always given,
keys are dummies and boto3's instance-metadata lookups are off."""

import itertools
import json
import uuid
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import boto3
import httpx
import pytest
from botocore.config import Config
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.signals import request_started
from storages.backends.s3 import S3Storage

from jobs import http, scrub
from jobs.imaging import ImageInfo
from jobs.models import Job
from jobs.providers import Refusal, get_provider
from jobs.sandbox import engine
from tests.images import image_bytes, upload
from tests.s3 import AWS_ENV, KEY_ID, SECRET, S3Server
from tests.support import timeline
from tests.test_production_settings import PRODUCTION, probe, strong_key
from upscaler_site.storage import BACKEND, origins, s3_options

EXPIRE = 120  # not the default (600): proves the links follow AWS_QUERYSTRING_EXPIRE
PUBLIC_GRANTEES = (
    "http://acs.amazonaws.com/groups/global/AllUsers",
    "http://acs.amazonaws.com/groups/global/AuthenticatedUsers",
)


# --- a bucket per test (the server: tests/s3.py, fixture in tests/conftest.py) -----
@dataclass
class Bucket:
    name: str
    client: object
    options: dict
    server: S3Server

    def stored(self) -> list[str]:
        found = self.client.list_objects_v2(Bucket=self.name).get("Contents", [])
        return sorted(item["Key"] for item in found)

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.name, Key=key)["Body"].read()

    def object_url(self, key: str) -> str:
        return f"{self.server.url}/{self.name}/{key}"


def s3_client(server_url: str):
    return boto3.session.Session(aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET).client(
        "s3",
        endpoint_url=server_url,
        region_name="us-east-1",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


@pytest.fixture
def bucket(s3_server, settings):
    """A fresh bucket, made the default storage the way a deployment does: STORAGE_URL
    and the AWS_* variables read by upscaler_site.storage."""
    name = f"portal-{uuid.uuid4().hex[:16]}"
    env = {
        **AWS_ENV,
        "STORAGE_URL": f"s3://{name}?endpoint_url={s3_server.url}&region=us-east-1",
        "AWS_QUERYSTRING_EXPIRE": str(EXPIRE),
    }
    options = s3_options(env)
    client = s3_client(s3_server.url)
    client.create_bucket(Bucket=name)
    # Changing STORAGES makes Django drop its cached default_storage (the setting_changed
    # receiver in django.test.signals), now and again when the fixture restores it.
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": BACKEND, "OPTIONS": options}}
    assert isinstance(default_storage, S3Storage)
    return Bucket(name, client, options, s3_server)


def query(url: str) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def assert_presigned(url: str, bucket: Bucket, key: str, expires: int) -> dict:
    """`url` is a SigV4 presigned GET of `key` on the bucket's own endpoint."""
    assert url.split("?", 1)[0] == bucket.object_url(key)
    params = query(url)
    assert params["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert params["X-Amz-Credential"].startswith(f"{KEY_ID}/")
    assert params["X-Amz-Signature"]
    assert params["X-Amz-Expires"] == str(expires)
    return params


def assert_private(bucket: Bucket, key: str) -> None:
    # moto applies object ACLs to anonymous requests (a public-read object answers 200),
    # so the refusal below is the bucket's privacy, not a server that refuses everyone.
    assert httpx.get(bucket.object_url(key)).status_code == 403
    grants = bucket.client.get_object_acl(Bucket=bucket.name, Key=key)["Grants"]
    assert not [g for g in grants if g["Grantee"].get("URI") in PUBLIC_GRANTEES]


def post_upload(client, *images, provider="local"):
    data = {"provider": provider, f"{provider}-scale": "2", "images": list(images)}
    return client.post("/", data)


# --- uploads, images and downloads ----------------------------------------------------------
def test_an_upload_goes_to_the_bucket_and_its_thumbnail_is_a_presigned_link(
    bucket, owner_client, settings
):
    response = post_upload(owner_client, upload("photo.png"))
    assert response.status_code == 302
    job = Job.objects.get()

    assert bucket.stored() == sorted([job.input_file.name, job.input_thumb.name])
    assert job.input_file.name.startswith("inputs/") and job.input_file.name.endswith(".png")
    assert job.input_thumb.name.startswith("thumbs/")
    assert bucket.read(job.input_file.name) == image_bytes()
    assert not settings.MEDIA_ROOT.exists() or not any(settings.MEDIA_ROOT.rglob("*"))
    for key in bucket.stored():
        assert_private(bucket, key)

    thumb = owner_client.get(f"/jobs/{job.pk}/input/thumb/")
    assert thumb.status_code == 302
    link = thumb["Location"]
    assert_presigned(link, bucket, job.input_thumb.name, EXPIRE)
    fetched = httpx.get(link)
    assert fetched.status_code == 200
    assert fetched.headers["Content-Type"] == "image/webp"
    assert fetched.content == bucket.read(job.input_thumb.name)


def test_each_image_view_redirects_to_a_short_lived_link_for_the_team_only(
    bucket, make_job, owner, team, client, outsider
):
    job = make_job(owner, team)  # the local provider, run inline: reads its input from S3
    assert job.state == Job.State.SUCCEEDED, timeline(job)
    # The result's thumbnail is made when someone first asks for it, from the bucket.
    assert bucket.stored() == sorted(
        [job.input_file.name, job.input_thumb.name, job.output_file.name]
    )
    client.force_login(owner)
    assert client.get(f"/jobs/{job.pk}/output/thumb/").status_code == 302
    job.refresh_from_db()
    assert job.output_thumb.name in bucket.stored()
    views = {
        "input/image": (job.input_file.name, "image/png"),
        "input/thumb": (job.input_thumb.name, "image/webp"),
        "output/image": (job.output_file.name, "image/png"),
        "output/thumb": (job.output_thumb.name, "image/webp"),
    }
    for view, (key, content_type) in views.items():
        response = client.get(f"/jobs/{job.pk}/{view}/")
        assert response.status_code == 302, view
        params = assert_presigned(response["Location"], bucket, key, EXPIRE)
        assert params["response-content-type"] == content_type
        # A browser may keep the redirect, never past half the link's life: whatever it
        # kept still leads to a link that works.
        assert response["Cache-Control"] == f"private, max-age={EXPIRE // 2}"
        fetched = httpx.get(response["Location"])
        assert fetched.status_code == 200 and fetched.content == bucket.read(key)

    # Another team's user: the same 404 as for a job that does not exist, no link.
    client.force_login(outsider)
    for view in views:
        response = client.get(f"/jobs/{job.pk}/{view}/")
        assert response.status_code == 404 and "Location" not in response
    response = client.get(f"/jobs/{job.pk}/download/")
    assert response.status_code == 404 and "Location" not in response


@pytest.mark.parametrize(
    "name, disposition",
    [
        ("photo.png", 'attachment; filename="photo-local-192x160.png"'),
        ('caf\u00e9 "1".png', "attachment; filename*=utf-8''caf%C3%A9%20%221%22-local-192x160.png"),
    ],
)
def test_the_download_redirects_to_a_presigned_attachment_link(
    bucket, make_job, owner, team, owner_client, name, disposition
):
    job = make_job(owner, team, name=name)
    response = owner_client.get(f"/jobs/{job.pk}/download/")

    assert response.status_code == 302
    link = response["Location"]
    params = assert_presigned(link, bucket, job.output_file.name, EXPIRE)
    assert params["response-content-disposition"] == disposition
    assert params["response-content-type"] == "image/png"
    # Over real HTTP, the bucket answers with the file as an attachment.
    fetched = httpx.get(link)
    assert fetched.status_code == 200
    assert fetched.headers["Content-Disposition"] == disposition
    assert fetched.headers["Content-Type"] == "image/png"
    assert fetched.content == bucket.read(job.output_file.name)
    assert_private(bucket, job.output_file.name)


# --- providers fetch inputs straight from the bucket -------------------------------------------
def test_a_pixazo_job_has_its_input_fetched_from_the_bucket_not_through_the_portal(
    bucket, sandbox, submit, sent_requests, settings
):
    portal_paths = []

    def seen(environ, **kwargs):
        portal_paths.append(environ["PATH_INFO"])

    request_started.connect(seen, weak=False)
    try:
        job = sandbox.settle(submit("pixazo", scale=2))
    finally:
        request_started.disconnect(seen)

    assert job.state == Job.State.SUCCEEDED, timeline(job)
    (post,) = [r for r in sent_requests if r.method == "POST"]
    link = json.loads(post.content)["image"]
    assert_presigned(link, bucket, job.input_file.name, settings.INPUT_URL_TTL)
    # The sandbox got the input from the bucket: moto served it, the portal never did.
    assert f'"GET /{bucket.name}/{job.input_file.name}?' in bucket.server.requests()
    assert any(p.startswith("/sandbox/pixazo/") for p in portal_paths)
    assert not [p for p in portal_paths if p.startswith("/inputs/")]
    # The result was stored in the bucket too (its thumbnail waits for a first look).
    keys = bucket.stored()
    assert job.output_file.name in keys and job.output_file.name.startswith("outputs/")
    assert not job.output_thumb
    assert bucket.read(job.output_file.name)[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_sandbox_trusts_the_bucket_origin_and_nothing_broader(bucket, settings):
    name = default_storage.save("sandbox-trust/in.png", ContentFile(image_bytes()))
    assert engine.fetch_input(default_storage.url(name)) == image_bytes()

    rules = engine.input_rules()
    assert rules.public is False
    assert rules.trusted_origins == {
        http.origin(settings.PUBLIC_BASE_URL),
        http.origin(bucket.server.url),
    }


def test_a_big_input_counts_as_reachable_when_the_bucket_is(settings, bucket):
    settings.PROVIDER_SETTINGS = {"fal": {"api_key": "real-key", "base_url": ""}}
    fal = get_provider("fal")
    big = ImageInfo("PNG", 96, 80, False, 25 * 1024 * 1024 - 4096)  # too big to send inline
    settings.PUBLIC_BASE_URL = "https://portal.example"  # public, but links go to the bucket
    with pytest.raises(Refusal) as refused:
        fal.check(big, fal.clean_options({}))
    assert bucket.server.url in refused.value.message

    public_bucket = {**bucket.options, "endpoint_url": "https://s3.example.com"}
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": BACKEND, "OPTIONS": public_bucket},
    }
    settings.PUBLIC_BASE_URL = "http://127.0.0.1:8000"  # private: no matter, links don't go here
    fal.check(big, fal.clean_options({}))


def test_the_bucket_secret_key_is_scrubbed(bucket):
    assert SECRET not in scrub.scrub(f"boto3 said: key {KEY_ID} secret {SECRET}")
    assert scrub.MASK in scrub.scrub(SECRET)


# --- STORAGE_URL and the settings it makes ------------------------------------------------------
def test_storage_url_gives_bucket_prefix_endpoint_region_and_path_style():
    env = {
        "STORAGE_URL": "s3://media-bucket/portal/?endpoint_url=http://127.0.0.1:9000&region=eu-west-1",
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret-example",
    }
    assert s3_options(env) == {
        "bucket_name": "media-bucket",
        "location": "portal",
        "endpoint_url": "http://127.0.0.1:9000",
        "region_name": "eu-west-1",
        "addressing_style": "path",  # the default with an endpoint: S3-compatible servers
        "signature_version": "s3v4",
        "default_acl": None,
        "querystring_auth": True,
        "querystring_expire": 600,
        "file_overwrite": False,
        "access_key": "AKIDEXAMPLE",
        "secret_key": "secret-example",
        "security_token": None,
    }


def test_the_usual_aws_variables_work_alone_and_fill_in_what_storage_url_leaves_out():
    alone = s3_options(
        {"AWS_STORAGE_BUCKET_NAME": "media-bucket", "AWS_S3_REGION_NAME": "eu-west-1"}
    )
    assert alone["bucket_name"] == "media-bucket" and alone["region_name"] == "eu-west-1"
    assert alone["endpoint_url"] is None and alone["addressing_style"] is None  # AWS: boto3's
    assert alone["access_key"] is None  # boto3's own chain (an instance role, say)

    both = s3_options(
        {
            "STORAGE_URL": "s3://from-url?addressing_style=virtual",
            "AWS_STORAGE_BUCKET_NAME": "from-env",
            "AWS_S3_ENDPOINT_URL": "https://minio.example.com",
            "AWS_QUERYSTRING_EXPIRE": "300",
        }
    )
    assert both["bucket_name"] == "from-url"
    assert both["endpoint_url"] == "https://minio.example.com"
    assert both["addressing_style"] == "virtual"
    assert both["querystring_expire"] == 300


def test_without_a_bucket_files_stay_on_local_disk():
    assert s3_options({}) is None
    assert s3_options({"AWS_S3_ENDPOINT_URL": "http://127.0.0.1:9000"}) is None


@pytest.mark.parametrize(
    "env, words",
    [
        ({"STORAGE_URL": "s3://key:secret@media-bucket"}, "must not hold keys"),
        ({"STORAGE_URL": "https://media-bucket"}, "must start with s3://"),
        ({"STORAGE_URL": "s3://media-bucket?acl=public-read"}, "unknown parameters acl"),
        ({"STORAGE_URL": "s3://media-bucket?region=a&region=b"}, "more than once"),
        ({"STORAGE_URL": "s3://Media_Bucket"}, "not valid"),
        ({"STORAGE_URL": "s3://media-bucket?endpoint_url=ftp://x"}, "http(s) URL"),
        ({"STORAGE_URL": "s3://media-bucket?addressing_style=sideways"}, "addressing_style"),
        ({"AWS_STORAGE_BUCKET_NAME": "media-bucket", "AWS_QUERYSTRING_EXPIRE": "ten"}, "whole"),
        ({"AWS_STORAGE_BUCKET_NAME": "media-bucket", "AWS_QUERYSTRING_EXPIRE": "0"}, "from 1"),
    ],
)
def test_a_storage_setting_that_makes_no_sense_stops_start_up(env, words):
    with pytest.raises(ImproperlyConfigured) as refused:
        s3_options(env)
    assert words in str(refused.value)


def test_presigned_links_point_where_the_csp_and_the_sandboxes_expect(monkeypatch):
    # One boto3 session for the whole matrix: each new one reloads the S3 model (~1 s).
    # Presigning is offline: every link is computed here, nothing is sent anywhere.
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    session = boto3.session.Session(aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET)
    monkeypatch.setattr(S3Storage, "_create_session", lambda self: session)
    for bucket_name, region, style, endpoint in itertools.product(
        ["media-bucket", "media.bucket"],
        ["", "eu-west-1"],
        ["", "path", "virtual"],
        ["", "http://127.0.0.1:9000", "http://localhost:9000", "https://s3.example.com"],
    ):
        env = {
            "AWS_STORAGE_BUCKET_NAME": bucket_name,
            "AWS_S3_REGION_NAME": region,
            "AWS_S3_ADDRESSING_STYLE": style,
            "AWS_S3_ENDPOINT_URL": endpoint,
        }
        options = s3_options(env)
        link = S3Storage(**options).url("inputs/a.png")
        allowed = {http.origin(o) for o in origins(options)}
        assert http.origin(link) in allowed, (env, link, allowed)


def test_settings_switch_storage_and_the_csp_from_the_environment(tmp_path):
    code = """
        from django.conf import settings
        out["default"] = settings.STORAGES["default"]
        out["img_src"] = settings.CONTENT_SECURITY_POLICY["DIRECTIVES"]["img-src"]
        out["origins"] = settings.STORAGE_ORIGINS
    """
    env = {**PRODUCTION, "SECRET_KEY": strong_key()}
    local = probe(code, env, tmp_path)
    assert local["default"] == {"BACKEND": "django.core.files.storage.FileSystemStorage"}
    assert local["img_src"] == ["'self'", "blob:", "data:"] and local["origins"] == []

    bucket_url = "s3://media-bucket?endpoint_url=https://minio.example.com:9000&region=us-east-1"
    s3 = probe(code, {**env, "STORAGE_URL": bucket_url, "AWS_SECRET_ACCESS_KEY": SECRET}, tmp_path)
    assert s3["default"]["BACKEND"] == "storages.backends.s3.S3Storage"
    assert s3["default"]["OPTIONS"]["bucket_name"] == "media-bucket"
    assert s3["default"]["OPTIONS"]["default_acl"] is None
    assert s3["img_src"] == ["'self'", "blob:", "data:", "https://minio.example.com:9000"]
    assert s3["origins"] == ["https://minio.example.com:9000"]
