"""The mecom test guest in a local QEMU, for the harness scripts.

Finds (or builds) the guest, launches QEMU for it (command line, firmware
directories, RAM in a /dev/shm file), talks QMP to it, cleans up QEMUs and RAM
files on any exit, waits on its serial log (workload marker, heartbeats) and
its run state, and issues the QMP commands that start a migration on either
side.  Used by migrate.py, bench.py, faults.py and lvtest.py.  Standard
library only.
"""

import atexit
import ctypes
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# The sampled guest RAM images (docs/harness.md, "The replay workload").
CORPUS_DIR = os.environ.get("MECOM_CORPUS") or os.path.join(os.path.dirname(HERE), "..",
                                                              "shared", "corpus")
REPLAY_OPS = ("replace", "slice", "words")
REPLAY_MIX_DEFAULT = "replace:20,slice:40,words:40"
MARKER = "MECOM-WORKLOAD-READY"
HEARTBEAT = "MECOM-HEARTBEAT"
GUEST_ERRORS = ("MECOM-WORKLOAD-ERROR", "MECOM-WORKLOAD-EXITED", "Kernel panic")
FIRMWARE_DIRS = ("/usr/share/qemu", "/usr/share/seabios", "/usr/lib/ipxe/qemu")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class HarnessError(Exception):
    pass


def read_text(path):
    """A (log) file's text, '' if it cannot be read."""
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def tail(path, n=5):
    """The last n lines of a log file, joined with ' | '."""
    return " | ".join(read_text(path).strip().splitlines()[-n:])


# --------------------------------------------------------------------------
# the guest
# --------------------------------------------------------------------------
def guest_files(opts):
    """(kernel, initrd, guest dir or None) from --kernel/--initrd/--guest,
    else from harness/build-guest.sh (which reuses its cache)."""
    if opts.kernel and opts.initrd:
        return opts.kernel, opts.initrd, None
    gdir = opts.guest
    if not gdir:
        script = os.path.join(HERE, "build-guest.sh")
        log("building/locating guest with harness/build-guest.sh")
        r = subprocess.run([script], stdout=subprocess.PIPE, text=True)
        if r.returncode != 0:
            raise SystemExit("build-guest.sh failed")
        gdir = r.stdout.strip().splitlines()[-1]
    kernel = opts.kernel or os.path.join(gdir, "vmlinuz")
    initrd = opts.initrd or os.path.join(gdir, "initrd.img")
    for f in (kernel, initrd):
        if not os.path.isfile(f):
            raise SystemExit(f"guest file missing: {f}")
    return kernel, initrd, gdir


def kernel_cmdline(workload, **params):
    """The guest's kernel command line: serial console, the workload and
    mecom.<key>=<value> for every parameter that is not None."""
    parts = ["console=ttyS0", "quiet", "loglevel=3", "panic=-1", f"mecom.workload={workload}"]
    parts += [f"mecom.{k}={v}" for k, v in params.items() if v is not None]
    return " ".join(parts)


def parse_mix(text):
    """The replay workload's change mix, 'replace:W,slice:W,words:W' (any
    order, missing = 0, weights are non-negative integers, not all 0) ->
    the same normalised to all three ops in that order, as the guest's
    `replay` program parses it.  Raises ValueError."""
    weights = dict.fromkeys(REPLAY_OPS, 0)
    seen = set()
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, w = item.partition(":")
        name = name.strip()
        if not sep or name not in weights:
            raise ValueError(f"bad mix item {item!r} (want {'|'.join(REPLAY_OPS)}:<weight>)")
        if name in seen:
            raise ValueError(f"mix names {name!r} twice")
        seen.add(name)
        if not w.strip().isdigit():
            raise ValueError(f"bad weight in {item!r} (a non-negative integer)")
        weights[name] = int(w)
    if not any(weights.values()):
        raise ValueError(f"mix {text!r} has no positive weight")
    return ",".join(f"{k}:{weights[k]}" for k in REPLAY_OPS)


def resolve_image(name):
    """A replay image: an existing file, or the name of a sample of the
    corpus (`compile` -> CORPUS_DIR/compile.pages.zst)."""
    if os.path.isfile(name):
        return os.path.abspath(name)
    for cand in (f"{name}.pages.zst", name):
        path = os.path.join(CORPUS_DIR, cand)
        if os.path.isfile(path):
            return os.path.abspath(path)
    raise SystemExit(f"replay image not found: {name!r} (a file, or a name in {CORPUS_DIR})")


def raw_image(path):
    """The raw-pages file to attach for `path`: the file itself when it is
    raw and a whole number of 4 KiB pages; else (a .zst, decompressed with the
    zstd CLI because the guest has no zstd, or a padded copy) a file under
    ${MECOM_CACHE:-~/.cache/mecom}/images/, reused while the source's path,
    size and mtime are unchanged."""
    st = os.stat(path)
    is_zst = path.endswith(".zst")
    if not is_zst and st.st_size % 4096 == 0:
        return path
    key = hashlib.sha256(f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:12]
    cache = os.path.join(os.environ.get("MECOM_CACHE") or os.path.expanduser("~/.cache/mecom"), "images")
    os.makedirs(cache, exist_ok=True)
    stem = os.path.basename(path).split(".")[0]
    out = os.path.join(cache, f"{stem}-{key}.raw")
    if os.path.exists(out):
        return out
    tmp = f"{out}.{os.getpid()}.tmp"
    try:
        if is_zst:
            log(f"decompressing {path} -> {out}")
            subprocess.run(["zstd", "-q", "-d", "-f", path, "-o", tmp], check=True)
        else:
            shutil.copyfile(path, tmp)
        size = os.path.getsize(tmp)
        if size % 4096:
            with open(tmp, "ab") as f:
                f.write(bytes(4096 - size % 4096))
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def image_args(raw):
    """QEMU arguments attaching a raw image as a read-only virtio disk (the
    guest's /dev/vda); both sides of a migration need the same device."""
    return ["-drive", f"file={raw},format=raw,if=none,id=mecomimg,readonly=on",
            "-device", "virtio-blk-pci,drive=mecomimg"]


def firmware_args():
    """-L for each Debian firmware directory that exists (a build-tree QEMU
    finds SeaBIOS and linuxboot_dma.bin there)."""
    args = []
    for d in FIRMWARE_DIRS:
        if os.path.isdir(d):
            args += ["-L", d]
    return args


# --------------------------------------------------------------------------
# QMP client
# --------------------------------------------------------------------------
class QMPError(Exception):
    def __init__(self, cmd, err):
        self.cmd = cmd
        self.err_class = err.get("class", "?")
        self.desc = err.get("desc", "?")
        super().__init__(f"{cmd}: {self.err_class}: {self.desc}")


class QMP:
    """Minimal synchronous QMP client over a unix socket."""

    def __init__(self, path, connect_timeout=30.0, proc=None):
        self.path = path
        self.events = []
        self._buf = b""
        self._id = 0
        deadline = time.monotonic() + connect_timeout
        while True:
            if proc is not None and proc.poll() is not None:
                raise HarnessError(f"QEMU exited (rc={proc.returncode}) before QMP was up")
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(path)
                break
            except OSError:
                s.close()
                if time.monotonic() > deadline:
                    raise HarnessError(f"cannot connect to QMP socket {path}")
                time.sleep(0.05)
        self.sock = s
        self.proc = proc
        greeting = self._read(timeout=connect_timeout)
        if "QMP" not in greeting:
            raise HarnessError(f"unexpected QMP greeting: {greeting}")
        self.version = greeting["QMP"].get("version", {})
        self.execute("qmp_capabilities")

    def _read(self, timeout, stacks=True):
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                where = self._stacks() if stacks else ""
                raise HarnessError(f"QMP read timeout on {self.path}{where}")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not data:
                raise HarnessError(f"QMP connection closed ({self.path})")
            self._buf += data
        line, self._buf = self._buf.split(b"\n", 1)
        line = line.strip()
        if not line:
            return self._read(max(0.01, deadline - time.monotonic()), stacks)
        return json.loads(line)

    def _stacks(self):
        """Where a QEMU that stopped answering is stuck: its threads'
        stacks (gdb, when installed) go to a file next to the socket, and
        each thread's innermost frames into the error."""
        if self.proc is None or self.proc.poll() is not None or not shutil.which("gdb"):
            return ""
        out = self.path + ".stacks.txt"
        try:
            text = subprocess.run(["gdb", "-p", str(self.proc.pid), "-batch", "-nx",
                                   "-ex", "thread apply all bt 12"],
                                  capture_output=True, text=True, timeout=60).stdout
        except (OSError, subprocess.TimeoutExpired) as e:
            return f" (no stacks: {e})"
        with open(out, "w") as f:
            f.write(text)
        threads, frames = [], []
        for line in text.splitlines():
            if line.startswith("Thread "):
                frames = []
                threads.append((line.split('"')[1] if '"' in line else line, frames))
            elif line.startswith("#") and len(frames) < 4:
                m = re.search(r" in (\S+) \(|^#\d+\s+(\S+) \(", line)
                if m:
                    frames.append(m.group(1) or m.group(2))
        summary = "; ".join(f"{name}: {' < '.join(f)}" for name, f in threads)
        return f"; threads: {summary} (whole stacks in {out})"

    def execute(self, cmd, args=None, timeout=30.0, stacks=True):
        """Runs `cmd`; `stacks=False` where no answer is an expected outcome
        (no gdb then)."""
        self._id += 1
        req = {"execute": cmd, "id": self._id}
        if args:
            req["arguments"] = args
        self.sock.sendall(json.dumps(req).encode() + b"\n")
        while True:
            msg = self._read(timeout, stacks)
            if "event" in msg:
                self.events.append(msg)
                continue
            if msg.get("id") != self._id:
                continue
            if "error" in msg:
                raise QMPError(cmd, msg["error"])
            return msg.get("return")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# --------------------------------------------------------------------------
# process / resource bookkeeping (cleanup on any exit)
# --------------------------------------------------------------------------
_LIVE_QEMUS = []
_SHM_FILES = set()
_KEEP_RAM = False


def _set_pdeathsig():
    """Child side of fork: die with the harness even if it is SIGKILLed."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def cleanup_all():
    for q in list(_LIVE_QEMUS):
        q.stop()
    if not _KEEP_RAM:
        for f in list(_SHM_FILES):
            try:
                os.unlink(f)
            except FileNotFoundError:
                pass
            _SHM_FILES.discard(f)


def track_shm(path):
    """Remove `path` (a /dev/shm file next to a RAM file) on any exit."""
    _SHM_FILES.add(path)


def sweep_stale_shm():
    """Remove /dev/shm/mecom-<pid>-<n>-<role> files left by a harness that was
    SIGKILLed (its QEMUs die with it via PDEATHSIG, its files do not)."""
    try:
        names = os.listdir("/dev/shm")
    except OSError:
        return
    for n in names:
        m = re.fullmatch(r"mecom-(\d+)-\d+-(src|dst\d*)(\.snap-[ab])?", n)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            try:
                os.unlink(os.path.join("/dev/shm", n))
                log(f"removed stale /dev/shm/{n}")
            except OSError:
                pass


def terminate(proc, timeout):
    """SIGTERM a child process that still runs; SIGKILL it if it has not
    exited `timeout` s later."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def install_cleanup(keep_ram=False):
    """Make every exit (normal, error, SIGINT, SIGTERM, SIGHUP) stop this
    process's QEMUs and remove their RAM files (kept with keep_ram); remove
    the RAM files of harnesses that were SIGKILLed."""
    global _KEEP_RAM
    _KEEP_RAM = keep_ram
    # Background jobs of non-interactive shells inherit SIGINT ignored;
    # make Ctrl-C / kill -INT always interrupt (and so clean up).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    atexit.register(cleanup_all)
    sweep_stale_shm()


# --------------------------------------------------------------------------
# one QEMU
# --------------------------------------------------------------------------
class Qemu:
    def __init__(self, role, run_id, opts, guest, workdir, incoming=False):
        self.role = role
        self.opts = opts
        self.run_id = run_id
        self.workdir = workdir
        self.shm = f"/dev/shm/mecom-{run_id}-{role}"
        self.qmp_path = os.path.join(workdir, f"{role}.qmp")
        if len(self.qmp_path) > 100:  # sun_path limit is 108 bytes
            self.qmp_path = f"/tmp/mecom-{run_id}-{role}.qmp"
        self.serial_log = os.path.join(workdir, f"{role}.serial.log")
        self.stderr_log = os.path.join(workdir, f"{role}.stderr.log")
        self.proc = None
        self.qmp = None
        mem = opts.mem
        accel = ["-accel", "kvm", "-cpu", opts.cpu or "host"] if opts.kvm else \
                ["-accel", "tcg"] + (["-cpu", opts.cpu] if opts.cpu else [])
        args = [opts.qemu, "-name", f"mecom-{role},debug-threads=on", "-no-user-config", "-nodefaults",
                "-display", "none", "-monitor", "none", "-no-reboot"]
        args += accel
        args += ["-smp", "1", "-m", f"{mem}M",
                 "-object", f"memory-backend-file,id=ram0,size={mem}M,mem-path={self.shm},share=on",
                 "-machine", "q35,memory-backend=ram0",
                 "-serial", f"file:{self.serial_log}",
                 "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
                 "-kernel", guest["kernel"], "-initrd", guest["initrd"],
                 "-append", guest["append"]]
        if not opts.no_firmware_dirs:
            args += firmware_args()
        if getattr(opts, "image_raw", None):
            args += image_args(opts.image_raw)
        if incoming:
            args += ["-incoming", "defer", "-S"]
        for extra in opts.qemu_arg:
            args += shlex.split(extra)
        self.args = args

    def start(self):
        for p in (self.qmp_path, self.serial_log):
            if os.path.exists(p):
                os.unlink(p)
        _SHM_FILES.add(self.shm)
        with open(os.path.join(self.workdir, f"{self.role}.cmdline"), "w") as f:
            f.write(shlex.join(self.args) + "\n")
        self._stderr = open(self.stderr_log, "w")
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL,
                                     stdout=self._stderr, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=_set_pdeathsig)
        _LIVE_QEMUS.append(self)
        try:
            self.qmp = QMP(self.qmp_path, proc=self.proc)
        except HarnessError as e:
            raise HarnessError(f"{self.role}: {e}; stderr: {self.stderr_tail()}")
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stderr_tail(self, n=5):
        return tail(self.stderr_log, n)

    def serial(self):
        return read_text(self.serial_log)

    def status(self):
        return self.qmp.execute("query-status")

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None and self.qmp is not None:
            try:
                self.qmp.execute("quit", timeout=3)
            except Exception:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        terminate(self.proc, 5)
        if self.qmp is not None:
            self.qmp.close()
        try:
            self._stderr.close()
        except Exception:
            pass
        if self in _LIVE_QEMUS:
            _LIVE_QEMUS.remove(self)
        try:
            os.unlink(self.qmp_path)
        except OSError:
            pass
        if not _KEEP_RAM:
            try:
                os.unlink(self.shm)
            except FileNotFoundError:
                pass
            _SHM_FILES.discard(self.shm)


# --------------------------------------------------------------------------
# waits
# --------------------------------------------------------------------------
def wait_serial(path, needle, timeout, what=None, vm=None):
    """Wait until `needle` appears in the serial log `path`; returns the
    log's text.  Fails at once on a guest error marker or, given the Qemu
    `vm` the log belongs to, when that QEMU exits."""
    who = vm.role if vm is not None else path
    deadline = time.monotonic() + timeout
    while True:
        text = read_text(path)
        if needle in text:
            return text
        for bad in GUEST_ERRORS:
            if bad in text:
                line = next((ln for ln in text.splitlines() if bad in ln), bad)
                raise HarnessError(f"{who} guest error: {line.strip()}")
        if vm is not None and not vm.alive():
            raise HarnessError(f"{who} QEMU exited (rc={vm.proc.returncode}): {vm.stderr_tail()}")
        if time.monotonic() > deadline:
            raise HarnessError(f"timeout ({timeout}s) waiting for {what or needle!r} on {who} "
                               f"serial: {text[-300:]!r}")
        time.sleep(0.2)


def wait_workload(vm, timeout):
    """Wait for the guest's workload marker; returns the marker line."""
    text = wait_serial(vm.serial_log, MARKER, timeout, what="workload marker", vm=vm)
    return next((ln.strip() for ln in text.splitlines() if MARKER in ln), "")


def wait_heartbeat(vm, timeout, before=None):
    """True once the guest has printed more heartbeats than `before` (default:
    as many as now), False if it does not within `timeout` s or QEMU exits."""
    if before is None:
        before = vm.serial().count(HEARTBEAT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and vm.alive():
        if vm.serial().count(HEARTBEAT) > before:
            return True
        time.sleep(0.2)
    return False


def wait_running(vm, timeout=15):
    """Poll query-status until the guest runs; returns the last status."""
    deadline = time.monotonic() + timeout
    st = {}
    while time.monotonic() < deadline:
        st = vm.status()
        if st.get("running"):
            return st
        time.sleep(0.1)
    return st


def resume(vm):
    """`cont` a stopped guest (a source after a completed migration)."""
    if not vm.status().get("running"):
        vm.qmp.execute("cont")
    return wait_running(vm)


# --------------------------------------------------------------------------
# starting a migration
# --------------------------------------------------------------------------
def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_incoming(dst, port, host="127.0.0.1"):
    """migrate-incoming on the destination; returns the URI."""
    uri = f"tcp:{host}:{port}"
    try:
        # exit-on-error=false keeps a failed destination alive so its error
        # can be queried (QEMU >= 9.1).
        dst.qmp.execute("migrate-incoming", {"uri": uri, "exit-on-error": False})
    except QMPError as e:
        if "exit-on-error" not in e.desc:
            raise
        dst.qmp.execute("migrate-incoming", {"uri": uri})
    return uri


def start_migration(src, uri):
    """`migrate` on the source, retried for up to 30 s while a previous
    failed or cancelled migration is still cleaning up."""
    deadline = time.monotonic() + 30
    while True:
        try:
            src.qmp.execute("migrate", {"uri": uri})
            return
        except QMPError as e:
            if "in progress" in e.desc and time.monotonic() < deadline:
                time.sleep(0.2)
                continue
            raise
