"""An embedded Redis Cluster for one machine: three masters on free ports, no replicas.

Used by ``feedamp dev --cluster``, the test fixtures and the benchmark. Each master is a
``redis-server --cluster-enabled yes`` child process (no persistence unless asked, its
node file in its own scratch directory, its cluster bus on a free port of its own rather than the
client port + 10,000, which may not exist); ``redis-cli --cluster create`` assigns the 16,384 slots
evenly. :func:`start_redis_cluster` returns only once every node reports
``cluster_state:ok``; :meth:`RedisClusterService.stop` stops every node and removes
their files, also when the start failed half-way. A cluster started ``persistent`` keeps an
append-only file per master, so :meth:`~RedisClusterService.stop_node` and
:meth:`~RedisClusterService.start_node` restart a master with its data, node id and slots
(the master restart test).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .services import Service, free_port, redis_server_binary, start_redis

__all__ = ["RedisClusterService", "redis_cli_binary", "start_redis_cluster"]

#: Seconds to wait for the cluster to form.
FORM_TIMEOUT = 30.0


def redis_cli_binary() -> str:
    """``redis-cli`` from PATH, else the one next to ``redis-server``."""
    found = shutil.which("redis-cli")
    if found:
        return found
    sibling = Path(redis_server_binary()).with_name("redis-cli")
    if sibling.exists():
        return str(sibling)
    raise RuntimeError("no redis-cli: install Redis (apt-get install redis-server)")


@dataclass
class RedisClusterService:
    """The masters of one embedded cluster."""

    nodes: list[Service] = field(default_factory=list)
    password: str | None = None

    @property
    def address(self) -> str:
        """``host:port`` of the first node (any node works as a seed)."""
        return self.nodes[0].address

    @property
    def url(self) -> str:
        """``redis://`` URL of the first node (with the password, if any)."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.address}/0"

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every node and remove their scratch files."""
        for node in self.nodes:
            node.stop(timeout)

    def stop_node(self, index: int, timeout: float = 10.0) -> None:
        """Stop master ``index`` (SIGTERM: an append-only file is flushed), keeping its
        files for :meth:`start_node`."""
        proc = self.nodes[index].proc
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def start_node(self, index: int) -> None:
        """Start master ``index`` again, same port, arguments and directory (its node file,
        and its data when the cluster is persistent); return once the cluster is ok."""
        node = self.nodes[index]
        with open(node.log_path, "ab") as log:
            proc = subprocess.Popen(
                node.proc.args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=node._tmpdir, start_new_session=True,
            )  # fmt: skip
        self.nodes[index] = Service(node.name, node.port, proc, node.log_path, node._tmpdir)
        deadline = time.monotonic() + FORM_TIMEOUT
        while True:
            try:
                if self.state_ok():
                    return
            except RuntimeError:  # not answering yet
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"cluster node {node.address} did not come back:\n"
                                   f"{node.log_tail()}")  # fmt: skip
            time.sleep(0.1)

    def cli(self, *args: str, node: int = 0, timeout: float = 30.0) -> str:
        """Run ``redis-cli -p <port of node> args...``; its output (RuntimeError on
        failure)."""
        argv = [redis_cli_binary(), "-h", "127.0.0.1", "-p", str(self.nodes[node].port)]
        if self.password:
            argv += ["-a", self.password, "--no-auth-warning"]
        argv += args
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0 or done.stdout.startswith("ERR"):
            raise RuntimeError(f"redis-cli {' '.join(args)}: {done.stdout}{done.stderr}".strip())
        return done.stdout

    def state_ok(self) -> bool:
        """True when every node reports ``cluster_state:ok``."""
        return all("cluster_state:ok" in self.cli("CLUSTER", "INFO", node=i)
                   for i in range(len(self.nodes)))  # fmt: skip


def start_redis_cluster(
    masters: int = 3, password: str | None = None, persistent: bool = False
) -> RedisClusterService:
    """Start ``masters`` cluster-mode ``redis-server`` processes on free ports, create the
    cluster (slots spread evenly, no replicas) and wait for ``cluster_state:ok``.
    ``password`` makes every node require it (``requirepass``, ``masterauth``);
    ``persistent`` gives every master an append-only file (``appendonly yes``)."""
    cluster = RedisClusterService(password=password)
    extra = ["--requirepass", password, "--masterauth", password] if password else []
    if persistent:
        extra += ["--appendonly", "yes"]
    try:
        redis_server_binary()
        for _ in range(masters):
            port = free_port()
            cluster.nodes.append(start_redis(
                port, "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                "--cluster-node-timeout", "5000", "--cluster-port", str(free_port()), *extra,
            ))  # fmt: skip
        addresses = [node.address for node in cluster.nodes]
        cluster.cli("--cluster", "create", *addresses, "--cluster-replicas", "0",
                    "--cluster-yes")  # fmt: skip
        deadline = time.monotonic() + FORM_TIMEOUT
        while not cluster.state_ok():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster did not reach cluster_state:ok in {FORM_TIMEOUT}s")
            time.sleep(0.1)
    except BaseException:
        cluster.stop()
        raise
    return cluster
