"""A real, single-node Apache Kafka broker as a plain JVM process: no Docker, no tarball.

Why: the hub's exactly-once core depends on broker behaviour (transactions, group
coordination, ``read_committed``) that fakes do not reproduce, and the machines that build
and test the hub have Java and Maven but no Docker engine. Maven Central carries every
broker jar, so ``deploy/kafka/pom.xml`` pins the broker version and this module:

1. resolves the jars once into ``deploy/kafka/lib/<pom hash>/`` (cached; a changed pom
   resolves again);
2. writes ``server.properties`` for one combined KRaft node on loopback;
3. formats the storage (first start of a work dir only);
4. starts ``kafka.Kafka`` detached (own session, pid file, output to ``kafka.out``);
5. waits for a metadata answer from the broker (not just an open port);
6. stops it with SIGTERM (controlled shutdown), then SIGKILL after a grace period.

Work dir layout: ``server.properties``, ``data/`` (log.dirs), ``logs/server.log``,
``kafka.out`` (stdout/stderr), ``kafka.pid``, ``kafka.json`` (what ``status`` reports).

``secure=True`` (``meldhub kafka up --secure``; see docs/security.md) runs the same node with
authentication and authorization: the client listener speaks SASL/SCRAM-SHA-256 (SASL_SSL with PEM
files when ``tls=True``), the controller listener SASL/PLAIN, the StandardAuthorizer denies what no
ACL allows (``allow.everyone.if.no.acl.found=false``) and only ``User:admin`` and the internal
``User:controller`` are super users. The admin's SCRAM credential is created at format time (as a
salted password, so the clear password is never on a command line). The admin password comes from
``MELDHUB_KAFKA_ADMIN_PASSWORD`` or ``MELDHUB_KAFKA_ADMIN_PASSWORD_FILE``, else a random one is
written to ``<workdir>/admin.password`` (mode 0600). ``server.properties`` holds the listeners'
JAAS passwords and is written with mode 0600 in secure mode.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
import concurrent.futures
import contextlib
import fcntl
import hashlib
import json
import os
from pathlib import Path
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from typing import Any
import uuid

DEFAULT_PORT = 9092
HOST = "127.0.0.1"

ADMIN_USER = "admin"
"""The super user of a secure local broker (also its inter-broker principal)."""
CONTROLLER_USER = "controller"
"""The principal the broker uses on the (SASL/PLAIN) controller listener; a super user."""
ADMIN_PASSWORD_ENV = "MELDHUB_KAFKA_ADMIN_PASSWORD"
ADMIN_PASSWORD_FILE_ENV = "MELDHUB_KAFKA_ADMIN_PASSWORD_FILE"
SCRAM_MECHANISM = "SCRAM-SHA-256"
SCRAM_ITERATIONS = 8192
# Characters that would break the JAAS line or the StorageTool's --add-scram syntax.
_UNSAFE_SECRET = re.compile(r'[\s"\\;,\[\]=]')


class LocalKafkaError(RuntimeError):
    """The local broker could not be resolved, formatted, started or stopped."""


def project_root() -> Path:
    """The directory holding ``deploy/kafka/pom.xml`` (env ``MELDHUB_HOME`` overrides)."""
    env = os.environ.get("MELDHUB_HOME")
    return Path(env).resolve() if env else Path(__file__).resolve().parents[1]


def default_workdir() -> Path:
    """``.run/kafka`` under the project root (env ``MELDHUB_KAFKA_DIR`` overrides)."""
    env = os.environ.get("MELDHUB_KAFKA_DIR")
    return Path(env).resolve() if env else project_root() / ".run" / "kafka"


def pom_path() -> Path:
    return project_root() / "deploy" / "kafka" / "pom.xml"


def pinned_version(pom: Path | None = None) -> str:
    """The ``kafka.version`` property of the pom: the broker version the jars will be."""
    text = (pom or pom_path()).read_text(encoding="utf-8")
    match = re.search(r"<kafka\.version>\s*([^<\s]+)\s*</kafka\.version>", text)
    if not match:
        raise LocalKafkaError(f"no <kafka.version> property in {pom or pom_path()}")
    return match.group(1)


def free_port() -> int:
    """A TCP port on loopback that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive ``flock``: concurrent test sessions and CLI calls queue up here."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def resolve_jars(pom: Path | None = None, mvn: str | None = None) -> Path:
    """Copy the broker's runtime jars from Maven (Central) once; return the lib directory.

    The cache key is the pom's content hash, so editing the pinned version resolves anew,
    while every later call (and every test session) costs one ``stat``.
    """
    pom = pom or pom_path()
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:16]
    lib_root = pom.parent / "lib"
    lib = lib_root / digest
    marker = lib / ".resolved"
    if marker.exists():
        return lib
    with _locked(lib_root / ".lock"):
        if marker.exists():  # another process resolved it while we waited
            return lib
        tmp = lib_root / f"{digest}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        cmd = [
            mvn or os.environ.get("MELDHUB_MVN", "mvn"),
            "-B", "-q", "-Dstyle.color=never",
            "-f", str(pom),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={tmp}",
        ]  # fmt: skip
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise LocalKafkaError(f"cannot run Maven to resolve the Kafka jars ({' '.join(cmd)}): {exc}") from exc
        if done.returncode != 0 or not any(tmp.glob("kafka_2.13-*.jar")):
            shutil.rmtree(tmp, ignore_errors=True)
            tail = (done.stdout + done.stderr).strip()[-3000:]
            raise LocalKafkaError(f"Maven failed to resolve the Kafka jars from {pom}:\n{tail}")
        shutil.rmtree(lib, ignore_errors=True)
        tmp.rename(lib)
        marker.write_text(pinned_version(pom) + "\n", encoding="utf-8")
        for stale in lib_root.iterdir():  # jars of earlier pom versions
            if stale.is_dir() and stale.name != digest and ".tmp-" not in stale.name:
                shutil.rmtree(stale, ignore_errors=True)
    return lib


def _random_cluster_id() -> str:
    """What ``kafka-storage random-uuid`` prints (base64url, 22 chars), without a JVM start."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka's Uuid.randomUuid() avoids these too
            return text


def _run_sync(coro: Any) -> Any:
    """Run a coroutine to completion even when the caller already runs an event loop."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


class LocalKafka:
    """One single-node KRaft broker (combined broker+controller) living in ``workdir``."""

    def __init__(
        self,
        workdir: Path | str | None = None,
        port: int = DEFAULT_PORT,
        controller_port: int | None = None,
        *,
        heap: str | None = None,
        detach: bool = True,
        node_id: int = 1,
        voters: str | None = None,
        cluster_id: str | None = None,
        replication: int = 1,
        secure: bool = False,
        admin_password: str | None = None,
        tls: bool = False,
    ) -> None:
        """``detach=False`` keeps the JVM in the caller's process group, so that a test run
        killed as a group (CI time-out, Ctrl-C) takes its broker along; the CLI detaches so
        the broker outlives ``meldhub kafka up``.

        ``secure=True``: SASL/SCRAM client listener, StandardAuthorizer, deny by default (see the
        module doc). ``admin_password`` overrides the environment and the work dir's file;
        ``tls=True`` (secure only) adds TLS with PEM files generated into ``<workdir>/tls``."""
        if tls and not secure:
            raise ValueError("tls=True needs secure=True")
        self.secure = secure
        self.tls = tls
        self._admin_password = admin_password
        self.detach = detach
        # Cluster membership (see LocalKafkaCluster); the defaults make a single node.
        self.node_id = node_id
        self.voters = voters
        self.cluster_id = cluster_id
        self.replication = replication
        self.expected_brokers = 1
        """Ready means this node is in the metadata with at least this many brokers."""
        self.workdir = Path(workdir).resolve() if workdir is not None else default_workdir()
        self.port = port
        self.controller_port = controller_port
        self.heap = heap or os.environ.get("MELDHUB_KAFKA_HEAP", "512m")
        self.properties = self.workdir / "server.properties"
        self.data_dir = self.workdir / "data"
        self.logs_dir = self.workdir / "logs"
        self.out_file = self.workdir / "kafka.out"
        self.pid_file = self.workdir / "kafka.pid"
        self.state_file = self.workdir / "kafka.json"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self.port}"

    # ---- secure mode: credentials and TLS files ---------------------------------------------

    @property
    def admin_password_file(self) -> Path:
        """Where a generated admin password lives (mode 0600); an env-given one is not written."""
        return self.workdir / "admin.password"

    @property
    def controller_password_file(self) -> Path:
        return self.workdir / "controller.password"

    @property
    def tls_dir(self) -> Path:
        return self.workdir / "tls"

    @property
    def ca_file(self) -> Path:
        """The CA certificate clients trust (``MELDHUB_KAFKA_SSL_CAFILE``) when ``tls=True``."""
        return self.tls_dir / "ca.pem"

    @property
    def security_protocol(self) -> str:
        if not self.secure:
            return "PLAINTEXT"
        return "SASL_SSL" if self.tls else "SASL_PLAINTEXT"

    def admin_password(self) -> str:
        """The admin's password: the constructor's, ``$MELDHUB_KAFKA_ADMIN_PASSWORD``, the file
        named by ``$MELDHUB_KAFKA_ADMIN_PASSWORD_FILE``, else ``<workdir>/admin.password``
        (generated, mode 0600, on first use). Never printed, never logged."""
        password = self._admin_password or os.environ.get(ADMIN_PASSWORD_ENV)
        if not password and os.environ.get(ADMIN_PASSWORD_FILE_ENV):
            path = Path(os.environ[ADMIN_PASSWORD_FILE_ENV])
            try:
                password = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise LocalKafkaError(f"cannot read the admin password file {path} ({exc.strerror})") from None
        if not password:
            password = _secret_file(self.admin_password_file)
        if _UNSAFE_SECRET.search(password) or len(password) < 12:
            raise LocalKafkaError(
                "the admin password must be at least 12 characters without spaces or any of \" ; , [ ] = \\"
            )
        return password

    def client_kwargs(self, username: str = ADMIN_USER, password: str | None = None) -> dict[str, Any]:
        """aiokafka keyword arguments to connect as ``username`` (default: the admin)."""
        if not self.secure:
            return {}
        kwargs: dict[str, Any] = {
            "security_protocol": self.security_protocol,
            "sasl_mechanism": SCRAM_MECHANISM,
            "sasl_plain_username": username,
            "sasl_plain_password": password if password is not None else self.admin_password(),
        }
        if self.tls:
            import ssl

            kwargs["ssl_context"] = ssl.create_default_context(cafile=str(self.ca_file))
        return kwargs

    def _secure_state_file(self) -> Path:
        return self.workdir / "secure.json"

    def _ensure_tls_files(self) -> None:
        if (self.tls_dir / "server.pem").exists() and self.ca_file.exists():
            return
        _write_self_signed_tls(self.tls_dir)

    # ---- process bookkeeping -------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.state_file.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return {}

    def pid(self) -> int | None:
        """The pid of this work dir's broker if it is alive (a stale pid file gives None)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if self._proc is not None and self._proc.pid == pid and self._proc.poll() is not None:
            return None  # our own child has exited (and is now reaped)
        if not Path("/proc/self").exists():  # not Linux: all we can check is that the pid lives
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return None
            except PermissionError:
                pass
            return pid
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        # A recycled pid or a zombie is not our broker.
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":
            return None
        if b"kafka.Kafka" not in cmdline or str(self.properties).encode() not in cmdline:
            return None
        return pid

    def is_running(self) -> bool:
        return self.pid() is not None

    def status(self) -> dict[str, Any]:
        """What ``meldhub kafka status`` prints; ``running`` is the process check alone."""
        state = self._state()
        pid = self.pid()
        port = int(state.get("port", self.port))
        return {
            "running": pid is not None,
            "pid": pid,
            "bootstrap": f"{HOST}:{port}",
            "controller_port": state.get("controller_port", self.controller_port),
            "version": state.get("version") or pinned_version(),
            "workdir": str(self.workdir),
            "log": str(self.logs_dir / "server.log"),
            "security_protocol": state.get("security_protocol", "PLAINTEXT"),
        }

    # ---- start ---------------------------------------------------------------------------

    def _listener_lines(self) -> list[str]:
        if not self.secure:
            return [
                f"listeners=PLAINTEXT://{HOST}:{self.port},CONTROLLER://{HOST}:{self.controller_port}",
                f"advertised.listeners=PLAINTEXT://{HOST}:{self.port}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            ]
        admin = self.admin_password()
        controller = _secret_file(self.controller_password_file)
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule"
        plain = "org.apache.kafka.common.security.plain.PlainLoginModule"
        lines = [
            f"listeners=CLIENT://{HOST}:{self.port},CONTROLLER://{HOST}:{self.controller_port}",
            f"advertised.listeners=CLIENT://{HOST}:{self.port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=CLIENT",
            f"listener.security.protocol.map=CONTROLLER:SASL_PLAINTEXT,CLIENT:{self.security_protocol}",
            # clients (and the broker to itself): SCRAM only; PLAIN is never offered there
            f"sasl.enabled.mechanisms={SCRAM_MECHANISM}",
            f"listener.name.client.sasl.enabled.mechanisms={SCRAM_MECHANISM}",
            f"sasl.mechanism.inter.broker.protocol={SCRAM_MECHANISM}",
            f'listener.name.client.{SCRAM_MECHANISM.lower()}.sasl.jaas.config={scram} required '
            f'username="{ADMIN_USER}" password="{admin}";',
            # the controller listener: PLAIN with one internal user, so no ANONYMOUS super user
            "sasl.mechanism.controller.protocol=PLAIN",
            "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
            f'listener.name.controller.plain.sasl.jaas.config={plain} required '
            f'username="{CONTROLLER_USER}" password="{controller}" user_{CONTROLLER_USER}="{controller}";',
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found=false",
            f"super.users=User:{ADMIN_USER};User:{CONTROLLER_USER}",
        ]
        if self.tls:
            self._ensure_tls_files()
            lines += [
                "listener.name.client.ssl.keystore.type=PEM",
                f"listener.name.client.ssl.keystore.location={self.tls_dir / 'server.pem'}",
                "listener.name.client.ssl.truststore.type=PEM",
                f"listener.name.client.ssl.truststore.location={self.ca_file}",
                "ssl.endpoint.identification.algorithm=https",
            ]
        return lines

    def _server_properties(self, version: str) -> str:
        lines = [
            "# Written by hub.kafka_local on every start: edit the code, not this file.",
            "process.roles=broker,controller",
            f"node.id={self.node_id}",
            *self._listener_lines(),
            f"controller.quorum.voters={self.voters or f'{self.node_id}@{HOST}:{self.controller_port}'}",
            f"log.dirs={self.data_dir}",
            "auto.create.topics.enable=false",
            "num.partitions=3",
            # Defaults of 50 partitions make the first group join / InitProducerId slow.
            f"offsets.topic.replication.factor={self.replication}",
            "offsets.topic.num.partitions=1",
            f"transaction.state.log.replication.factor={self.replication}",
            f"transaction.state.log.min.isr={min(2, self.replication)}",
            "transaction.state.log.num.partitions=1",
            "group.initial.rebalance.delay.ms=0",
        ]
        if self.replication > 1:
            lines += [
                f"default.replication.factor={self.replication}",
                f"min.insync.replicas={min(2, self.replication)}",
            ]
        if int(version.split(".")[0]) >= 4:
            lines += [
                f"share.coordinator.state.topic.replication.factor={self.replication}",
                f"share.coordinator.state.topic.min.isr={min(2, self.replication)}",
            ]
        return "\n".join(lines) + "\n"

    def _java(self) -> str:
        java_home = os.environ.get("JAVA_HOME")
        return str(Path(java_home) / "bin" / "java") if java_home else "java"

    def _format(self, lib: Path) -> None:
        if (self.data_dir / "meta.properties").exists():
            return
        cmd = [
            self._java(), "-Xmx256m", "-cp", f"{lib}/*",
            f"-Dlog4j2.configurationFile={pom_path().parent / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.logs_dir}",
            "kafka.tools.StorageTool", "format",
            "-t", self.cluster_id or _random_cluster_id(), "-c", str(self.properties),
        ]  # fmt: skip
        if self.secure:
            # The admin (also the inter-broker user) must exist before the first start. Given as a
            # salted password: the clear password never appears on a command line (ps).
            salt = secrets.token_bytes(24)
            salted = hashlib.pbkdf2_hmac("sha256", self.admin_password().encode(), salt, SCRAM_ITERATIONS)
            cmd += [
                "--add-scram",
                f"{SCRAM_MECHANISM}=[name={ADMIN_USER},salt={base64.b64encode(salt).decode()},"
                f"saltedpassword={base64.b64encode(salted).decode()},iterations={SCRAM_ITERATIONS}]",
            ]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise LocalKafkaError(f"cannot run Java 17+ ({cmd[0]}) to format {self.data_dir}: {exc}") from exc
        if done.returncode != 0:
            raise LocalKafkaError(f"formatting {self.data_dir} failed:\n{(done.stdout + done.stderr).strip()[-3000:]}")
        if self.secure:
            state_file = self._secure_state_file()
            state_file.write_text(
                json.dumps({"admin_user": ADMIN_USER, "fingerprint": self._admin_fingerprint()}), encoding="utf-8"
            )
            state_file.chmod(0o600)

    def _admin_fingerprint(self, salt: str | None = None) -> str:
        """A salted hash of the admin password: tells a changed password from the formatted one."""
        salt = salt or secrets.token_hex(8)
        digest = hashlib.sha256((salt + self.admin_password()).encode()).hexdigest()
        return f"{salt}${digest}"

    def _check_secure_mode(self) -> None:
        """A work dir is formatted secure or not, once: refuse to start it the other way."""
        if not (self.data_dir / "meta.properties").exists():
            return
        try:
            state = json.loads(self._secure_state_file().read_text(encoding="utf-8"))
        except (OSError, ValueError):
            state = None
        if self.secure and state is None:
            raise LocalKafkaError(
                f"{self.workdir} was formatted without --secure (no admin user): use a new --workdir for a secure broker"
            )
        if not self.secure and state is not None:
            raise LocalKafkaError(f"{self.workdir} was formatted with --secure: start it with --secure")
        if self.secure and state is not None:
            salt = str(state.get("fingerprint", "$")).split("$", 1)[0]
            if self._admin_fingerprint(salt) != state.get("fingerprint"):
                raise LocalKafkaError(
                    f"the admin password differs from the one {self.workdir} was formatted with "
                    f"(check ${ADMIN_PASSWORD_ENV} / ${ADMIN_PASSWORD_FILE_ENV} / {self.admin_password_file})"
                )

    def _cluster_id(self) -> str | None:
        try:
            text = (self.data_dir / "meta.properties").read_text(encoding="utf-8")
        except OSError:
            return None
        match = re.search(r"^cluster\.id=(\S+)", text, re.MULTILINE)
        return match.group(1) if match else None

    def _pick_controller_port(self) -> int:
        previous = self._state().get("controller_port")
        if previous and previous != self.port and not _port_in_use(int(previous)):
            return int(previous)
        while (port := free_port()) == self.port:
            pass
        return port

    def up(self, timeout: float = 90.0) -> str:
        """Start the broker unless it already runs; return the bootstrap servers when ready.

        Raises ``LocalKafkaError`` (naming the log files) when the JVM exits early or does not
        answer a metadata request within ``timeout`` seconds; a broker that did not become
        ready is stopped again rather than left half-started.
        """
        if self.start():
            try:
                self._wait_ready(timeout)
            except BaseException:
                self.down(timeout=10)
                raise
        return self.bootstrap_servers

    def start(self) -> bool:
        """Start the JVM without waiting for readiness; False if it was already running.
        A cluster starts every node first: no node is ready before a quorum of voters runs.
        """
        self.workdir.mkdir(parents=True, exist_ok=True)
        with _locked(self.workdir / ".lock"):
            if self.is_running():
                self.port = int(self._state().get("port", self.port))
                return False
            if _port_in_use(self.port):
                raise LocalKafkaError(
                    f"port {self.port} on {HOST} is already in use (another broker?); choose another port"
                )
            lib = resolve_jars()
            version = pinned_version()
            if self.controller_port is None:
                self.controller_port = self._pick_controller_port()
            self._check_secure_mode()
            if self.secure:  # it holds the listeners' passwords: owner only, before any is written
                self.properties.touch(mode=0o600)
                self.properties.chmod(0o600)
            self.properties.write_text(self._server_properties(version), encoding="utf-8")
            self._format(lib)
            self.logs_dir.mkdir(exist_ok=True)
            cmd = [
                self._java(), f"-Xmx{self.heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={pom_path().parent / 'log4j2.properties'}",
                f"-Dkafka.logs.dir={self.logs_dir}",
                "-cp", f"{lib}/*", "kafka.Kafka", str(self.properties),
            ]  # fmt: skip
            with open(self.out_file, "ab") as out:
                self._proc = subprocess.Popen(
                    cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    cwd=self.workdir, start_new_session=self.detach,
                )  # fmt: skip
            self.pid_file.write_text(f"{self._proc.pid}\n")
            self.state_file.write_text(
                json.dumps(
                    {
                        "pid": self._proc.pid,
                        "port": self.port,
                        "controller_port": self.controller_port,
                        "version": version,
                        "security_protocol": self.security_protocol,
                        "started_at": time.time(),
                    }
                ),
                encoding="utf-8",
            )
            return True

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        expected_cluster = self._cluster_id()
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise LocalKafkaError(
                    f"the Kafka JVM exited with code {self._proc.returncode} during start-up; "
                    f"see {self.out_file} and {self.logs_dir / 'server.log'}{self._tail()}"
                )
            if _port_in_use(self.port):
                try:
                    # Own credentials (none for PLAINTEXT), whatever MELDHUB_KAFKA_* says for clients.
                    info = _run_sync(_cluster_info_as(self.bootstrap_servers, self.client_kwargs(), timeout=3.0))
                    ids = {b["node_id"] for b in info["brokers"]}
                    if self.node_id in ids and len(ids) >= self.expected_brokers and info["cluster_id"] == expected_cluster:
                        return
                    last_error = f"metadata without this broker: {info}"
                except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
                    last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.25)
        raise LocalKafkaError(
            f"Kafka did not become ready on {self.bootstrap_servers} within {timeout:.0f}s ({last_error}); "
            f"see {self.logs_dir / 'server.log'} and {self.out_file}"
        )

    def _tail(self, lines: int = 15) -> str:
        """The end of ``kafka.out`` (JVM errors, WARN and above), to put into an error."""
        try:
            text = self.out_file.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-lines:]
        except OSError:
            return ""
        return ("\n--- last lines of kafka.out ---\n" + "\n".join(text)) if text else ""

    # ---- stop ----------------------------------------------------------------------------

    def down(self, timeout: float = 30.0) -> bool:
        """Stop the broker: SIGTERM (Kafka's controlled shutdown), SIGKILL after ``timeout``.

        Returns False when nothing was running. Only a process whose command line names this
        work dir's ``server.properties`` is ever signalled.
        """
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        self._signal(pid, signal.SIGTERM)
        if not self._wait_gone(pid, timeout):
            self._signal(pid, signal.SIGKILL)
            if not self._wait_gone(pid, 10.0):
                raise LocalKafkaError(f"Kafka (pid {pid}) survived SIGKILL")
        self.pid_file.unlink(missing_ok=True)
        return True

    @staticmethod
    def _signal(pid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)  # a detached JVM leads its own group; else no group has this id
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.pid == pid:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(timeout=0.2)
            if self.pid() is None:
                return True
            time.sleep(0.1)
        return self.pid() is None


def _secret_file(path: Path) -> str:
    """The secret in ``path``; a new random one (mode 0600, created atomically) if there is none."""
    try:
        text = path.read_text(encoding="utf-8").strip()
        if text:
            return text
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")
    path.chmod(0o600)
    return value


def _write_self_signed_tls(directory: Path) -> None:
    """A throw-away CA and a server certificate for 127.0.0.1/localhost, as PEM (local use only).

    ``server.pem`` holds the unencrypted PKCS#8 key and the chain (Kafka's PEM keystore format),
    ``ca.pem`` the CA certificate clients trust. Production brings its own PEM files.
    """
    from datetime import UTC, datetime, timedelta
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "meldhub local CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(directory / "server.pem", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key_pem + cert.public_bytes(pem) + ca.public_bytes(pem))
    (directory / "ca.pem").write_bytes(ca.public_bytes(pem))


async def _cluster_info_as(bootstrap: str, auth: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """:func:`hub.kafka_admin.cluster_info` with explicit client credentials (``{}``: PLAINTEXT)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=max(int(timeout * 1000), 1000),
        client_id="meldhub-admin",
        **auth,
    )
    try:
        async with asyncio.timeout(timeout):
            await admin.start()
            meta = await admin.describe_cluster()
    finally:
        await admin.close()
    return {
        "cluster_id": meta.get("cluster_id"),
        "controller_id": meta.get("controller_id"),
        "brokers": [{"node_id": b["node_id"], "host": b["host"], "port": b["port"]} for b in meta.get("brokers", [])],
    }


class LocalKafkaCluster:
    """Several combined KRaft nodes on loopback forming one cluster (fault tests).

    Same cluster id, one static voter set, replication factor ``replication`` for internal
    and new topics, ``min.insync.replicas=2``: with three nodes the cluster keeps working, and
    keeps every acknowledged write, while any one node is down.
    """

    def __init__(self, workdir: Path | str, nodes: int = 3, *, heap: str = "384m", detach: bool = True) -> None:
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        layout_file = self.workdir / "cluster.json"
        try:  # the same ports and cluster id on every start of this work dir
            layout = json.loads(layout_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            layout = {
                "cluster_id": _random_cluster_id(),
                "nodes": [{"id": i, "port": free_port(), "controller_port": free_port()} for i in range(1, nodes + 1)],
            }
            layout_file.write_text(json.dumps(layout), encoding="utf-8")
        voters = ",".join(f"{n['id']}@{HOST}:{n['controller_port']}" for n in layout["nodes"])
        self.nodes = [
            LocalKafka(
                self.workdir / f"node{n['id']}",
                port=n["port"],
                controller_port=n["controller_port"],
                heap=heap,
                detach=detach,
                node_id=n["id"],
                voters=voters,
                cluster_id=layout["cluster_id"],
                replication=min(3, len(layout["nodes"])),
            )
            for n in layout["nodes"]
        ]
        for node in self.nodes:
            node.expected_brokers = len(self.nodes)

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.bootstrap_servers for node in self.nodes)

    def up(self, timeout: float = 120.0) -> str:
        started = [node for node in self.nodes if node.start()]
        try:
            for node in started:
                node._wait_ready(timeout)
        except BaseException:
            self.down()
            raise
        return self.bootstrap_servers

    def down(self) -> None:
        for node in self.nodes:
            node.down(timeout=30)

    def stop_node(self, index: int, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop one node (SIGTERM: controlled shutdown; SIGKILL: a crash)."""
        node = self.nodes[index]
        pid = node.pid()
        if pid is None:
            return
        if sig == signal.SIGTERM:
            node.down(timeout=60)
        else:
            node._signal(pid, sig)
            node._wait_gone(pid, 30)
            node.pid_file.unlink(missing_ok=True)

    def start_node(self, index: int, timeout: float = 120.0) -> None:
        node = self.nodes[index]
        node.expected_brokers = 1  # the others may be down too; this node's own return counts
        try:
            node.up(timeout)
        finally:
            node.expected_brokers = len(self.nodes)
