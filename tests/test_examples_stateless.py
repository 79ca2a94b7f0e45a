"""examples/stateless_server: the server and its client, each run as documented."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "stateless_server"


@pytest.mark.threads_only
def test_line_server_keeps_one_instance_per_user(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, str(EXAMPLE / "server.py"), "--port", "0"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 30
        while not (found := re.search(r"on 127\.0\.0\.1:(\d+)", log.read_text())):
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        client = subprocess.run(
            [sys.executable, str(EXAMPLE / "client.py"), "--port", found.group(1)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert client.returncode == 0, client.stderr
        replies = [line[2:] for line in client.stdout.splitlines() if line.startswith("< ")]
        assert replies == [
            "alice #1: HELLO",
            "bob #1: HI THERE",
            "alice #2: STILL ME, OTHER CONNECTION",  # same user, other connection
            "bob #2: HOW MANY?",
            "alice: goodbye after 3 lines",
            "alice #1: BACK AGAIN",  # a fresh instance after bye
        ]
        server.send_signal(signal.SIGINT)
        assert server.wait(15) == 0, log.read_text()
        assert "Traceback" not in log.read_text()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(15)
