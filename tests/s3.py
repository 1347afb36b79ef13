"""A real S3-compatible server for the tests: moto's server mode, started on a free
loopback port as a subprocess (its `s3_server` fixture lives in tests/conftest.py)."""

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

KEY_ID = "portal-test-key-id"
SECRET = "portal-test-secret-" + "s" * 24  # moto accepts any key; this one is only ours
# boto3 in this process and in moto's: dummy keys, no instance metadata, no ~/.aws files.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": KEY_ID,
    "AWS_SECRET_ACCESS_KEY": SECRET,
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


@dataclass
class S3Server:
    url: str
    log: Path

    def requests(self) -> str:
        """moto's request log (one line per request: method, path and query, status)."""
        return self.log.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_moto(log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    with log.open("ab") as out:
        # Its log goes to a file: a pipe nobody reads would fill and stall the server.
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **AWS_ENV},
        )
    return process, f"http://127.0.0.1:{port}"


def wait_for(process: subprocess.Popen, url: str, log: Path, timeout=30.0) -> bool:
    """True once the server answers; False if it exited (its port was taken meanwhile)."""
    deadline = time.monotonic() + timeout
    while process.poll() is None:
        try:
            httpx.get(url + "/", timeout=1.0)
            return True
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"moto's S3 server did not answer within {timeout:g} s:\n{log.read_text()}")
        time.sleep(0.1)
    return False


def serve(tmp_path_factory):
    log = tmp_path_factory.mktemp("moto") / "server.log"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in AWS_ENV.items():
            patch.setenv(name, value)
        for _attempt in range(3):  # the free port may be taken before moto binds it
            process, url = start_moto(log)
            if wait_for(process, url, log):
                break
        else:
            pytest.fail(f"moto's S3 server would not start:\n{log.read_text()}")
        try:
            yield S3Server(url, log)
        finally:
            process.terminate()
            process.wait(timeout=10)


def make_bucket(server_url: str, name: str) -> None:
    import boto3

    boto3.client(
        "s3",
        endpoint_url=server_url,
        region_name="us-east-1",
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
    ).create_bucket(Bucket=name)
