"""Private MariaDB and Redis servers, for tests that stop, stall or wipe them.

The machine's own servers (3306, 6379) are shared by every other test and by CI: a fault
test must never stop them. These start a server of the same binaries on a free port, with
its data in a temp folder, that a test may SIGKILL, SIGSTOP or restart at will.

    with PrivateMariaDB(tmp / "db") as db, PrivateRedis(tmp / "redis") as rd:
        env = clean_env(DATABASE_URL=db.url("portal"), CELERY_BROKER_URL=rd.url())
        db.stop(); db.start()         # stopped and started again, data kept
        db.pause(); db.resume()       # stalled (SIGSTOP / SIGCONT): connections hang
        rd.restart_empty()            # a Redis restart without persistence: the queue is gone
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from it_stack import free_port, mysql_execute


def require_binaries(*names: str) -> None:
    """Skip (or fail, under PORTAL_REQUIRE_SERVICES=1) when a server binary is not installed."""
    missing = [name for name in names if not shutil.which(name)]
    if not missing:
        return
    problem = f"{', '.join(missing)} not installed (apt-get install mariadb-server redis-server)"
    if os.environ.get("PORTAL_REQUIRE_SERVICES") == "1":
        pytest.fail(problem, pytrace=False)
    pytest.skip(problem)


def _wait_port(port: int, up: bool, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.5)
            listening = s.connect_ex(("127.0.0.1", port)) == 0
        if listening == up:
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} did not {'open' if up else 'close'} port {port} within {timeout} s")


class _Server:
    """One server process in its own session; start/stop/kill/pause keep the same port and data."""

    name = "server"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.popen: subprocess.Popen | None = None
        self.log = folder / f"{self.name}.log"

    def _args(self) -> list[str]:
        raise NotImplementedError

    def start(self, timeout: float = 60) -> None:
        assert self.popen is None or self.popen.poll() is not None, f"{self.name} is running"
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(self._args(), stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _wait_port(self.port, True, timeout, self.name)
        except TimeoutError as e:
            raise TimeoutError(f"{e}\n{self.tail()}") from None

    def stop(self, timeout: float = 30) -> None:
        """A clean shutdown (SIGTERM), as an administrator or an orchestrator would do."""
        self._signal_and_wait(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """A crash: SIGKILL, no shutdown work."""
        self._signal_and_wait(signal.SIGKILL, 10)

    def pause(self) -> None:
        """Stalled: the port stays open, connections are accepted by the kernel and then hang."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def tail(self, lines: int = 30) -> str:
        if not self.log.exists():
            return ""
        body = self.log.read_text(errors="replace").splitlines()[-lines:]
        return f"----- {self.name} ({self.log})\n" + "\n".join(body) + "\n"

    def _signal(self, sig: int) -> None:
        if self.running:
            os.kill(self.popen.pid, sig)

    def _signal_and_wait(self, sig: int, timeout: float) -> None:
        if not self.running:
            return
        os.kill(self.popen.pid, signal.SIGCONT)  # a paused server cannot act on SIGTERM
        os.kill(self.popen.pid, sig)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=10)
        _wait_port(self.port, False, 10, self.name)

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.kill()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class PrivateMariaDB(_Server):
    """mariadbd on its own port and data folder; root without a password over TCP."""

    name = "mariadb"

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.datadir = folder / "data"
        self.socket = folder / "mysqld.sock"

    def _args(self) -> list[str]:
        return ["mariadbd", "--no-defaults", "--user=root", f"--datadir={self.datadir}",
                f"--port={self.port}", "--bind-address=127.0.0.1", f"--socket={self.socket}",
                f"--pid-file={self.folder / 'mysqld.pid'}", "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_unicode_ci", "--skip-log-bin",
                "--innodb-buffer-pool-size=32M", "--innodb-log-file-size=16M",
                "--innodb-flush-log-at-trx-commit=2", "--skip-name-resolve"]

    def start(self, timeout: float = 60) -> None:
        if not self.datadir.exists():
            done = subprocess.run(
                ["mariadb-install-db", "--no-defaults", "--user=root", f"--datadir={self.datadir}",
                 "--auth-root-authentication-method=normal", "--skip-test-db"],
                capture_output=True, text=True, timeout=120)
            if done.returncode != 0:
                shutil.rmtree(self.datadir, ignore_errors=True)
                raise RuntimeError(f"mariadb-install-db failed\n{done.stdout}\n{done.stderr}")
        super().start(timeout)
        self._wait_sql(timeout)

    def _wait_sql(self, timeout: float) -> None:
        import pymysql

        deadline = time.monotonic() + timeout
        while True:
            try:
                pymysql.connect(host="127.0.0.1", port=self.port, user="root", connect_timeout=2).close()
                return
            except pymysql.MySQLError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"MariaDB on {self.port} accepts no login\n{self.tail()}") from None
                time.sleep(0.2)

    def execute(self, sql: str, database: str | None = None, args: tuple = ()) -> list[tuple]:
        return mysql_execute(sql, database, args, port=self.port)

    def create_database(self, name: str) -> str:
        self.execute(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 "
                     "COLLATE utf8mb4_unicode_ci")
        return name

    def url(self, database: str) -> str:
        return f"mysql+pymysql://root@127.0.0.1:{self.port}/{database}?charset=utf8mb4"


class PrivateRedis(_Server):
    """redis-server on its own port; keeps nothing on disk unless `appendonly` is asked for."""

    name = "redis"

    def __init__(self, folder: Path, appendonly: bool = False) -> None:
        super().__init__(folder)
        self.appendonly = appendonly

    def _args(self) -> list[str]:
        return ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.folder),
                "--save", "", "--appendonly", "yes" if self.appendonly else "no",
                "--maxmemory-policy", "noeviction"]

    def restart_empty(self) -> None:
        """Down and up again with nothing in it, as a Redis without persistence restarts."""
        self.kill()
        for leftover in self.folder.glob("*.aof"):
            leftover.unlink()
        shutil.rmtree(self.folder / "appendonlydir", ignore_errors=True)
        self.start()

    def client(self):
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=3, socket_connect_timeout=3)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"
