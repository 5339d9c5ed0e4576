#!/usr/bin/env python3
"""libvirt end-to-end test of the cbc multifd compression method.

Runs privileged libvirtd daemons on this machine, each in its own mount
namespace (private /etc/libvirt, /run/libvirt, /var/lib/libvirt,
/var/cache/libvirt and /var/log/libvirt, own host_uuid, pid file inside its
run directory), all talking over loopback:

  A, B  libvirtd built with libvirt-patches/ (scripts/build-libvirt.sh)
  C, D  stock libvirtd 11.3.0 from bookworm-backports

Every domain is a TCG guest (harness/build-guest.sh: Debian cloud kernel and
busybox initramfs running the memwrite workload) whose emulator is the QEMU
patched with qemu-patches/.  Guest RAM is a shared file under /dev/shm
(<memoryBacking><source type='file'/><access mode='shared'/>), which the test
hard-links while the source runs, so the source's final RAM survives
libvirt's clean-up and can be compared byte for byte with the destination's
RAM while the destination is still paused (virsh migrate --suspend).

Scenarios (see docs/libvirt.md):
  patched-cbc       A->B  --live --parallel --parallel-connections 2 --comp-methods cbc
  patched-tunables  B->A  same plus --comp-cbc-mode/-similarity-threshold/
                          -sparse-threshold/-zstd-level/-cache-size, and --p2p
                          (the source libvirtd forwards method and tunables
                          itself)
  patched-tls       A->B  --parallel --comp-methods cbc --tls: both daemons
                          have migrate_tls_x509_cert_dir set to certificates
                          made for the run (harness/tls.py), verify on
  patched-errors    the patch's own checks (cbc without --parallel, a tunable
                          without cbc) and QEMU's range checks passed back by
                          libvirt (zstd level 25, mode 'turbo', a page cache
                          of 100 bytes)
  stock-reject      C: stock libvirt refuses --comp-methods cbc
  stock-mismatch    C->D  cbc (-global) on the source only: the destination
                          fails the migration, the source keeps running
  stock-global      C->D  -global migration.multifd-compression=cbc through
                          <qemu:commandline>, --live --parallel, no --comp-methods
  stock-mapped-ram  D: the -global route's caveat, a sparse (mapped-ram) save
                          fails ("Mapped-ram only available for non-compressed
                          non-TLS multifd migration")

Every patched-libvirt migration with cbc's page cache on also checks that
virsh domjobinfo shows it (libvirt patch 0005: Compression cache, data,
pages, misses, overflows; the cache size as QEMU reports it).

Each check prints a "PASS: ..." or "FAIL: ..." line on stdout; the exit
status is 1 if any check failed.  Needs root.  Standard library only.
"""

import argparse
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid

import tls
from migrate import compare_ram
from qemu import (HEARTBEAT, MARKER, QMP, HarnessError, QMPError, firmware_args,
                  kernel_cmdline, log, read_text, tail, terminate, wait_serial)

# The id libvirt gives the tls-creds-x509 object of a TLS migration
# (qemuAliasTLSObjFromSrcAlias("libvirt_migrate")).
LIBVIRT_TLS_CREDS = "objlibvirt_migrate_tls0"

MOUNTS = (("etc", "/etc/libvirt"), ("run", "/run/libvirt"),
          ("lib", "/var/lib/libvirt"), ("cache", "/var/cache/libvirt"),
          ("log", "/var/log/libvirt"))
ACTIVE = ("setup", "active", "pre-switchover", "device")
MAPPED_RAM_ERRORS = ("Mapped-ram only available for non-compressed non-TLS multifd migration",
                     "Cannot use compression with mapped-ram")
SAMPLED_PARAMS = ("multifd-compression", "multifd-channels", "multifd-cbc-mode",
              "multifd-cbc-similarity-threshold", "multifd-cbc-sparse-threshold",
              "multifd-cbc-zstd-level", "multifd-cbc-cache-size", "tls-creds")

RESULTS = []
SUMMARY = {}


def check(name, ok, detail=""):
    line = f"{'PASS' if ok else 'FAIL'}: {name}"
    if detail:
        line += f" -- {detail}"
    print(line, flush=True)
    RESULTS.append((name, bool(ok), detail))
    return ok


class TestError(Exception):
    pass


# --------------------------------------------------------------------------
# daemons
# --------------------------------------------------------------------------
class Daemon:
    def __init__(self, name, base, shm, libvirtd, virsh, port_min, emulator, tls_dir=None):
        self.name = name
        self.tls_dir = tls_dir
        self.dir = os.path.join(base, name)
        self.shm = os.path.join(shm, name)
        self.libvirtd = libvirtd
        self.virsh_bin = virsh
        self.port_min = port_min
        self.emulator = emulator
        self.host_uuid = str(uuid.uuid4())
        self.proc = None
        self.uri = f"qemu+unix:///system?socket={self.path('run')}/libvirt-sock"

    def path(self, sub, *rest):
        return os.path.join(self.dir, sub, *rest)

    def write_config(self):
        for sub, _ in MOUNTS:
            os.makedirs(self.path(sub), exist_ok=True)
        os.makedirs(self.shm, exist_ok=True)
        with open(self.path("etc", "libvirtd.conf"), "w") as f:
            f.write(f'''# mecom libvirt test daemon {self.name}
auth_unix_rw = "none"
auth_unix_ro = "none"
unix_sock_rw_perms = "0700"
host_uuid = "{self.host_uuid}"
log_filters = "1:qemu.qemu_monitor 1:qemu.qemu_migration 3:*"
log_outputs = "1:file:/var/log/libvirt/libvirtd.log"
''')
        with open(self.path("etc", "qemu.conf"), "w") as f:
            f.write(f'''# mecom libvirt test daemon {self.name}: no systemd, udev or virtlogd
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
migration_port_min = {self.port_min}
migration_port_max = {self.port_min + 47}
memory_backing_dir = "{self.shm}"
''')
            if self.tls_dir:
                f.write(f'migrate_tls_x509_cert_dir = "{self.tls_dir}"\nmigrate_tls_x509_verify = 1\n')

    def start(self):
        self.write_config()
        for _, mnt in MOUNTS:
            os.makedirs(mnt, exist_ok=True)
        script = "set -e\n"
        for sub, mnt in MOUNTS:
            script += f'mount --bind "{self.path(sub)}" "{mnt}"\n'
        script += 'exec "$0" --pid-file /run/libvirt/libvirtd.pid --config /etc/libvirt/libvirtd.conf\n'
        self.out = open(os.path.join(self.dir, "libvirtd.out"), "w")
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, self.libvirtd],
            stdin=subprocess.DEVNULL, stdout=self.out, stderr=subprocess.STDOUT,
            start_new_session=True)
        log(f"{self.name}: started {self.libvirtd} (pid {self.proc.pid}), uri {self.uri}")

    def wait_ready(self, timeout=180):
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise TestError(f"libvirtd {self.name} exited with {self.proc.returncode}: "
                                f"{tail(os.path.join(self.dir, 'libvirtd.out'))}")
            r = self.virsh("version", check=False, timeout=30)
            if r.returncode == 0:
                log(f"{self.name}: ready: " + " / ".join(
                    ln.strip() for ln in r.stdout.splitlines() if "libvirt" in ln.lower()))
                return
            if time.monotonic() > deadline:
                raise TestError(f"libvirtd {self.name} not ready after {timeout}s: {r.stderr.strip()}")
            time.sleep(0.5)

    def virsh(self, *args, check=True, timeout=120, virsh=None):
        cmd = [virsh or self.virsh_bin, "-q", "-c", self.uri] + list(args)
        try:
            r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TestError(f"timeout ({timeout}s): {' '.join(cmd)}")
        if check and r.returncode != 0:
            raise TestError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
        return r

    def domstate(self, dom):
        r = self.virsh("domstate", dom, check=False, timeout=30)
        return r.stdout.strip() if r.returncode == 0 else f"error: {r.stderr.strip()}"

    def qemu_pids(self):
        pids = []
        for pf in glob.glob(self.path("run", "qemu", "*.pid")):
            try:
                pids.append(int(open(pf).read().strip()))
            except (OSError, ValueError):
                pass
        return pids

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            r = self.virsh("list", "--name", check=False, timeout=20)
            for dom in r.stdout.split():
                self.virsh("destroy", dom, check=False, timeout=30)
        pids = self.qemu_pids()
        terminate(self.proc, 15)
        # QEMU processes this daemon started and did not reap (by pid only).
        for pid in pids + self.qemu_pids():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if b"qemu" not in f.read():
                        continue
                os.kill(pid, signal.SIGKILL)
                log(f"{self.name}: killed leftover QEMU {pid}")
            except OSError:
                pass
        self.proc = None
        self.out.close()
        shutil.rmtree(self.shm, ignore_errors=True)


# --------------------------------------------------------------------------
# domain XML
# --------------------------------------------------------------------------
def domain_xml(name, emulator, kernel, initrd, cmdline, mem_mib, serial, qmp, extra_args=()):
    # like harness/qemu.py: firmware search path, for QEMU builds that
    # were not configured with --firmwarepath (scripts/build-qemu.sh is)
    args = ["-qmp", f"unix:{qmp},server=on,wait=off"] + firmware_args() + list(extra_args)
    qargs = "\n".join(f"    <qemu:arg value='{a}'/>" for a in args)
    return f"""<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>{name}</name>
  <memory unit='MiB'>{mem_mib}</memory>
  <memoryBacking>
    <source type='file'/>
    <access mode='shared'/>
  </memoryBacking>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>{cmdline}</cmdline>
  </os>
  <features><acpi/></features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>{emulator}</emulator>
    <controller type='usb' model='none'/>
    <serial type='file'>
      <source path='{serial}'/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline>
{qargs}
  </qemu:commandline>
</domain>
"""


def retarget_xml(xml, old_serial, new_serial, old_qmp, new_qmp):
    """The migratable XML of a running domain with its serial log and extra
    QMP socket moved to the destination's paths."""
    assert old_serial in xml and old_qmp in xml, "paths not found in the migratable XML"
    return xml.replace(old_serial, new_serial).replace(old_qmp, new_qmp)


# --------------------------------------------------------------------------
# QMP sampling during the migration
# --------------------------------------------------------------------------
class Sampler(threading.Thread):
    """Polls query-migrate (and query-migrate-parameters while a migration is
    active) on an extra QMP socket until stopped."""

    def __init__(self, role, path, interval=0.02):
        super().__init__(daemon=True)
        self.role = role
        self.path = path
        self.interval = interval
        self.stop_evt = threading.Event()
        self.active_params = None   # parameters seen while status was active
        self.statuses = []
        self.cbc = None             # last cbc statistics seen
        self.cbc_status = None
        self.last = None            # last query-migrate reply
        self.samples = 0
        self.errors = 0

    def run(self):
        qmp = None
        while not self.stop_evt.is_set():
            if qmp is None:
                if not os.path.exists(self.path):
                    time.sleep(self.interval)
                    continue
                try:
                    qmp = QMP(self.path, connect_timeout=2)
                except (HarnessError, OSError, ValueError):
                    qmp = None
                    self.errors += 1
                    time.sleep(self.interval)
                    continue
            try:
                st = qmp.execute("query-migrate", timeout=5)
                self.samples += 1
                status = st.get("status")
                if status and (not self.statuses or self.statuses[-1] != status):
                    self.statuses.append(status)
                if status in ACTIVE:
                    p = qmp.execute("query-migrate-parameters", timeout=5)
                    sub = {k: p.get(k) for k in SAMPLED_PARAMS if k in p}
                    if status == "active" or self.active_params is None:
                        self.active_params = sub
                if st.get("cbc"):
                    self.cbc = st["cbc"]
                    self.cbc_status = status
                if status:
                    self.last = st
            except (HarnessError, OSError, QMPError, ValueError):
                self.errors += 1
                if qmp is not None:
                    qmp.close()
                qmp = None
            time.sleep(self.interval)
        if qmp is not None:
            qmp.close()

    def finish(self):
        self.stop_evt.set()
        self.join(timeout=10)


# --------------------------------------------------------------------------
# guest helpers
# --------------------------------------------------------------------------
def heartbeats(text):
    return [int(m.group(1)) for m in re.finditer(HEARTBEAT + r" (\d+)", text)]


def capacity_bytes(text):
    """Bytes of a capacity as virsh prints it ("64.000 MiB"), or None."""
    units = {"B": 0, "bytes": 0, "KiB": 10, "MiB": 20, "GiB": 30, "TiB": 40}
    try:
        value, unit = text.split()
        return round(float(value) * (1 << units[unit]))
    except (AttributeError, ValueError, KeyError):
        return None


def ram_file(daemon, timeout=10):
    """The guest RAM file of the (single) running domain of a daemon."""
    deadline = time.monotonic() + timeout
    while True:
        # libvirt: <memory_backing_dir>/libvirt/qemu/<id>-<name>/pc.ram
        files = [os.path.join(dp, f) for dp, _, fs in os.walk(daemon.shm) for f in fs
                 if os.path.isfile(os.path.join(dp, f))]
        if len(files) == 1:
            return files[0]
        if time.monotonic() > deadline:
            raise TestError(f"{daemon.name}: expected one RAM file under {daemon.shm}, found {files}")
        time.sleep(0.2)


def log_lines(daemon, since):
    """libvirtd debug log lines written after byte offset `since`."""
    with open(daemon.path("log", "libvirtd.log"), errors="replace") as f:
        f.seek(since)
        return f.read().splitlines()


def log_size(daemon):
    try:
        return os.path.getsize(daemon.path("log", "libvirtd.log"))
    except OSError:
        return 0


def qmp_sent(lines, command):
    """Arguments of every QMP `command` the daemon sent, from its debug log."""
    out = []
    for ln in lines:
        if "QEMU_MONITOR_SEND_MSG" not in ln and "QEMU_MONITOR_IO_WRITE" not in ln:
            continue
        m = re.search(r'(\{"execute":"' + re.escape(command) + r'".*\})', ln)
        if not m:
            continue
        raw = m.group(1)
        try:
            # the log quotes the message with a trailing "\r\n" in some levels
            obj = json.loads(raw.split("\\r\\n")[0])
        except ValueError:
            continue
        out.append(obj.get("arguments", {}))
    # SEND_MSG and IO_WRITE log the same command twice: deduplicate in order
    dedup = []
    for a in out:
        if not dedup or dedup[-1] != a:
            dedup.append(a)
    return dedup


def mib(n):
    return f"{n / 1048576:.1f} MiB"


# --------------------------------------------------------------------------
# one live migration with all checks
# --------------------------------------------------------------------------
def live_migrate(tag, src, dst, dom, cur, run_dir, virsh_args, expect, via_global=False,
                 virsh=None, method="cbc"):
    """Migrate the running domain `dom` from `src` to `dst` with --suspend,
    then check cbc use, RAM and guest liveness.  `cur` holds the source's
    serial/qmp paths; returns the destination's."""
    new = {"serial": os.path.join(dst.dir, f"serial-{tag}.log"),
           "qmp": os.path.join(dst.dir, f"qmp-{tag}.sock")}
    xml = src.virsh("dumpxml", "--migratable", dom).stdout
    dxml = retarget_xml(xml, cur["serial"], new["serial"], cur["qmp"], new["qmp"])
    dxml_path = os.path.join(run_dir, f"{tag}-dest.xml")
    with open(dxml_path, "w") as f:
        f.write(dxml)

    # Keep the source's guest RAM: libvirt deletes its memory backing
    # directory when the source QEMU is stopped after the migration.
    src_ram = ram_file(src)
    keep = os.path.join(os.path.dirname(src.shm), f"{tag}-src.ram")
    if os.path.exists(keep):
        os.unlink(keep)
    os.link(src_ram, keep)

    last_src_hb = max(heartbeats(read_text(cur["serial"])) or [-1])
    src_off, dst_off = log_size(src), log_size(dst)
    s_src = Sampler("src", cur["qmp"])
    s_dst = Sampler("dst", new["qmp"])
    s_src.start()
    s_dst.start()
    time.sleep(0.3)  # let the source sampler connect

    cmd = ["migrate", "--live", "--suspend", "--verbose"] + virsh_args + \
          ["--xml", dxml_path, "--migrateuri", "tcp://127.0.0.1", dom, dst.uri]
    log(f"{tag}: virsh {' '.join(cmd)}")
    t0 = time.monotonic()
    r = src.virsh(*cmd, check=False, timeout=600, virsh=virsh)
    wall = time.monotonic() - t0
    s_src.finish()
    s_dst.finish()
    ok = check(f"{tag}: virsh migrate succeeded", r.returncode == 0,
               f"{wall:.1f} s" if r.returncode == 0 else r.stderr.strip())
    if not ok:
        return cur

    res = {"wall_s": round(wall, 2)}
    SUMMARY[tag] = res

    # --- domain states ---------------------------------------------------
    dst_state = dst.domstate(dom)
    src_state = src.domstate(dom)
    check(f"{tag}: destination domain is paused after --suspend", dst_state == "paused",
          f"state '{dst_state}'")
    check(f"{tag}: source domain is no longer running",
          src_state == "shut off" or src_state.startswith("error"),
          f"state '{src_state}'" if src_state == "shut off" else "transient domain gone")

    # --- job statistics (bytes sent) ---------------------------------------
    ji = src.virsh("domjobinfo", "--completed", "--keep-completed", dom, check=False, virsh=virsh)
    if ji.returncode != 0:
        ji = dst.virsh("domjobinfo", "--completed", dom, check=False, virsh=virsh)
    jobinfo = {}
    for ln in ji.stdout.splitlines():
        if ":" in ln:
            k, v = ln.split(":", 1)
            jobinfo[k.strip()] = v.strip()
    res["jobinfo"] = {k: jobinfo.get(k) for k in ("Time elapsed", "Data processed",
                                                   "Memory processed", "Memory total",
                                                   "Total downtime", "Iteration")}
    last = s_src.last or {}
    ram = last.get("ram", {})
    if ram:
        res["src_ram_transferred"] = ram.get("transferred")
        res["src_ram_normal_bytes"] = ram.get("normal-bytes")
        res["src_ram_total"] = ram.get("total")
    log(f"{tag}: jobinfo {res['jobinfo']}")
    # cbc's page cache in libvirt's compression statistics (patch 0005).
    cache = (s_src.cbc or {}).get("cache-size", 0)
    if method == "cbc" and not via_global and cache:
        shown = {k: jobinfo.get(k) for k in ("Compression cache", "Compressed data",
                                             "Compressed pages", "Compression cache misses",
                                             "Compression overflows")}
        res["jobinfo_cbc_cache"] = shown
        check(f"{tag}: domjobinfo shows cbc's page cache of {mib(cache)} and its deltas",
              None not in shown.values() and capacity_bytes(shown["Compression cache"]) == cache,
              json.dumps(shown))
    if ram and method == "none":
        sent, pages = ram.get("transferred", 0), ram.get("normal-bytes", 0)
        log(f"{tag}: sent {mib(sent)} for {mib(pages)} of pages (no compression)")
    elif ram:
        sent, pages = ram.get("transferred", 0), ram.get("normal-bytes", 0)
        detail = (f"sent {mib(sent)} for {mib(pages)} of pages ({pages / max(sent, 1):.2f}x), "
                  f"'Data processed' {jobinfo.get('Data processed')}")
        mode = (s_src.active_params or {}).get("multifd-cbc-mode", "adaptive")
        if mode == "fixed":
            check(f"{tag}: the stream was compressed (bytes sent < bytes of the pages sent)",
                  0 < sent < pages, detail)
        else:
            # The other modes measure: on this unlimited loopback link raw
            # pages are often the fastest choice, so only a stream larger
            # than the raw pages (beyond frame overhead) is a fault.
            check(f"{tag}: the stream is no larger than the raw pages ({mode} mode)",
                  0 < sent <= pages * 1.02, detail)
    else:
        check(f"{tag}: source's final query-migrate sampled", False, "no sample")

    # --- evidence 1: QMP samples on the extra monitors -------------------------
    for s, who in ((s_src, "source"), (s_dst, "destination")):
        p = s.active_params or {}
        res[f"{s.role}_params_during_migration"] = p
        res[f"{s.role}_statuses"] = s.statuses
        res[f"{s.role}_samples"] = s.samples
        check(f"{tag}: {who} QEMU had multifd-compression={method} during the migration "
              f"(query-migrate-parameters)", p.get("multifd-compression") == method,
              f"sampled {p or 'nothing'}; statuses {s.statuses}; {s.samples} samples")
        for k, v in expect.items():
            check(f"{tag}: {who} QEMU had {k}={v} during the migration", p.get(k) == v,
                  f"sampled {p.get(k)!r}")
    # --- evidence 2: cbc statistics in query-migrate ---------------------------
    for s, who in ((s_src, "source"), (s_dst, "destination")) if method == "cbc" else ():
        c = s.cbc or {}
        res[f"{s.role}_cbc"] = c
        check(f"{tag}: {who} QEMU reported cbc statistics in query-migrate",
              c.get("pages", 0) > 0 and c.get("frames", 0) > 0,
              (f"frames={c.get('frames')} pages={c.get('pages')} bytes_in={c.get('bytes-in')} "
               f"bytes_out={c.get('bytes-out')} ratio={c.get('ratio')} (status {s.cbc_status})")
              if c else "no cbc member seen")
    # --- evidence 3: libvirtd debug logs -------------------------------------------
    for d, off, who in ((src, src_off, "source"), (dst, dst_off, "destination")):
        lines = log_lines(d, off)
        sets = qmp_sent(lines, "migrate-set-parameters")
        res[f"{who}_set_parameters"] = sets[:1]
        if method == "none":
            check(f"{tag}: {who} libvirtd did not set multifd-compression (debug log)",
                  bool(sets) and all("multifd-compression" not in a for a in sets[:1]),
                  json.dumps(sets[:1]))
        elif not via_global:
            hit = [a for a in sets if a.get("multifd-compression") == method]
            check(f"{tag}: {who} libvirtd sent migrate-set-parameters with "
                  f"\"multifd-compression\":\"cbc\" (debug log)", bool(hit),
                  json.dumps(hit[0] if hit else sets[:1]))
            for k, v in expect.items():
                check(f"{tag}: {who} libvirtd sent {k}={v} (debug log)",
                      any(a.get(k) == v for a in hit), "")
        else:
            # -global route: libvirt never sets multifd-compression itself;
            # the QEMU command line carries it (libvirt's per-domain QEMU log).
            first = sets[0] if sets else None
            check(f"{tag}: {who} libvirtd did not touch multifd-compression before migrating",
                  first is not None and "multifd-compression" not in first, json.dumps(first))
            qlog = read_text(d.path("log", "qemu", f"{dom}.log"))
            check(f"{tag}: {who} QEMU was started with -global migration.multifd-compression=cbc",
                  "migration.multifd-compression=cbc" in qlog, "")

    # --- RAM: source's final RAM vs destination's, destination still paused ---
    dst_ram = ram_file(dst)
    t = time.monotonic()
    cmp = compare_ram(keep, dst_ram)
    res["ram_compare"] = {"identical": cmp["identical"], "bytes": cmp["size_src"],
                          "pages": cmp["pages"], "diff_pages": cmp["diff_pages"],
                          "seconds": round(time.monotonic() - t, 2)}
    check(f"{tag}: guest RAM identical on source and destination (full compare)",
          cmp["identical"],
          f"{cmp['pages']} pages, {mib(cmp['size_src'])}, {cmp['diff_pages']} differ"
          + (f", first at {cmp['first_diff_offset']:#x}" if cmp["diff_pages"] else ""))
    os.unlink(keep)

    # --- the guest keeps running on the destination ----------------------------
    dst.virsh("resume", dom, virsh=virsh)
    deadline = time.monotonic() + 30
    hb = []
    while time.monotonic() < deadline:
        hb = heartbeats(read_text(new["serial"]))
        if len(hb) >= 2:
            break
        time.sleep(0.3)
    state = dst.domstate(dom)
    res["heartbeats"] = {"src_last": last_src_hb, "dst": hb[:3]}
    check(f"{tag}: guest runs on the destination after resume", state == "running"
          and len(hb) >= 2 and hb[0] > last_src_hb,
          f"state '{state}', source's last heartbeat {last_src_hb}, destination's {hb[:3]}")
    log(f"{tag}: summary {json.dumps(res)}")
    return new


def start_guest(tag, daemon, dom, args, guest, extra_args=(), persistent=True):
    cur = {"serial": os.path.join(daemon.dir, f"serial-{tag}.log"),
           "qmp": os.path.join(daemon.dir, f"qmp-{tag}.sock")}
    cmdline = kernel_cmdline("memwrite", wss=args.wss, hb=1, stats=0)
    xml = domain_xml(dom, args.qemu, os.path.join(guest, "vmlinuz"),
                     os.path.join(guest, "initrd.img"), cmdline, args.mem,
                     cur["serial"], cur["qmp"], extra_args)
    xml_path = os.path.join(daemon.dir, f"{dom}.xml")
    with open(xml_path, "w") as f:
        f.write(xml)
    if persistent:
        daemon.virsh("define", xml_path)
        daemon.virsh("start", dom)
    else:
        daemon.virsh("create", xml_path)
    t = time.monotonic()
    wait_serial(cur["serial"], MARKER, args.boot_timeout, what="the memwrite workload")
    log(f"{tag}: {dom} running on {daemon.name}, workload ready after {time.monotonic() - t:.1f} s")
    return cur


def expect_error(tag, daemon, what, virsh_args, dom, dst, needle, virsh=None, cur=None,
                 drop_global=False):
    """A migration that must be refused with `needle` in virsh's error.  With
    `cur` (source paths) the destination gets its own serial/QMP paths, for
    errors that only come after libvirt started the destination QEMU.  With
    `drop_global` the destination XML loses the -global arguments of
    <qemu:commandline>: a destination QEMU without cbc."""
    xml_args = []
    if cur:
        n = len(RESULTS)
        xml = daemon.virsh("dumpxml", "--migratable", dom).stdout
        if drop_global:
            xml = re.sub(r"\s*<qemu:arg value='-global'/>\s*<qemu:arg value='migration\.[^']*'/>",
                         "", xml)
            assert "multifd-compression" not in xml, "could not drop the -global"
        path = os.path.join(dst.dir, f"refused-{n}.xml")
        with open(path, "w") as f:
            f.write(retarget_xml(xml, cur["serial"], os.path.join(dst.dir, f"serial-refused-{n}.log"),
                                 cur["qmp"], os.path.join(dst.dir, f"qmp-refused-{n}.sock")))
        xml_args = ["--xml", path]
    r = daemon.virsh("migrate", "--live", *virsh_args, *xml_args, "--migrateuri", "tcp://127.0.0.1",
                     dom, dst.uri, check=False, timeout=120, virsh=virsh)
    err = r.stderr.strip()
    check(f"{tag}: {what}", r.returncode != 0 and needle in err, f"virsh said: {err!r}")
    state = daemon.domstate(dom)
    check(f"{tag}: domain still running on the source after the failed migration",
          state == "running", f"state '{state}'")
    return err


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--qemu", required=True, help="patched qemu-system-x86_64")
    ap.add_argument("--libvirt-build", required=True,
                    help="build directory from scripts/build-libvirt.sh (src/libvirtd, tools/virsh)")
    ap.add_argument("--guest", required=True, help="directory from harness/build-guest.sh")
    ap.add_argument("--stock-libvirtd", default="/usr/sbin/libvirtd")
    ap.add_argument("--stock-virsh", default="/usr/bin/virsh")
    ap.add_argument("--no-stock", action="store_true", help="skip the stock-libvirt scenarios")
    ap.add_argument("--no-patched", action="store_true", help="skip the patched-libvirt scenarios")
    ap.add_argument("--mem", type=int, default=256, help="guest RAM in MiB")
    ap.add_argument("--wss", type=int, default=128, help="memwrite working set in MiB")
    ap.add_argument("--channels", type=int, default=2)
    ap.add_argument("--baseline", action="store_true",
                    help="also migrate once without compression (patched libvirt), for the byte counts")
    ap.add_argument("--boot-timeout", type=int, default=120)
    ap.add_argument("--workdir", default=None, help="keep logs here (default: a temp dir, removed on success)")
    ap.add_argument("--json", default=None, help="write the measured summary here")
    args = ap.parse_args()

    if os.geteuid() != 0:
        sys.exit("lvtest: needs root (privileged libvirtd, mount namespaces)")
    patched_libvirtd = os.path.join(args.libvirt_build, "src", "libvirtd")
    patched_virsh = os.path.join(args.libvirt_build, "tools", "virsh")
    for f in (args.qemu, patched_libvirtd, patched_virsh):
        if not os.access(f, os.X_OK):
            sys.exit(f"lvtest: not executable: {f}")
    if not args.no_stock:
        for f in (args.stock_libvirtd, args.stock_virsh):
            if not os.access(f, os.X_OK):
                sys.exit(f"lvtest: stock libvirt not installed: {f} (scripts/build-libvirt.sh installs it)")

    # short base path: unix socket paths must stay below 108 bytes
    base = args.workdir or f"/tmp/mecom-lv.{os.getpid()}"
    os.makedirs(base, exist_ok=True)
    shm = f"/dev/shm/mecom-lv-{os.getpid()}"
    os.makedirs(shm, exist_ok=True)
    daemons = []

    def cleanup(*_):
        for d in daemons:
            try:
                d.stop()
            except Exception as e:  # noqa: BLE001 - best effort clean-up
                log(f"cleanup {d.name}: {e}")
        daemons.clear()
        shutil.rmtree(shm, ignore_errors=True)

    def on_signal(signum, _frame):
        log(f"signal {signum}: cleaning up (logs stay in {base})")
        cleanup()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    t_all = time.monotonic()
    try:
        A = B = C = D = None
        if not args.no_patched:
            tls_dir = tls.make_certs(os.path.join(base, "tls"))
            A = Daemon("A", base, shm, patched_libvirtd, patched_virsh, 49152, args.qemu, tls_dir)
            B = Daemon("B", base, shm, patched_libvirtd, patched_virsh, 49200, args.qemu, tls_dir)
            daemons += [A, B]
        if not args.no_stock:
            C = Daemon("C", base, shm, args.stock_libvirtd, args.stock_virsh, 49248, args.qemu)
            D = Daemon("D", base, shm, args.stock_libvirtd, args.stock_virsh, 49296, args.qemu)
            daemons += [C, D]
        t = time.monotonic()
        for d in daemons:
            d.start()
        # in parallel: the first connection makes each daemon probe QEMU
        errors = []

        def ready(d):
            try:
                d.wait_ready()
            except TestError as e:
                errors.append(str(e))
        threads = [threading.Thread(target=ready, args=(d,)) for d in daemons]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        if errors:
            raise TestError("; ".join(errors))
        SUMMARY["daemons_start_s"] = round(time.monotonic() - t, 1)
        for d in daemons:
            check(f"daemon {d.name}: own mount namespace, pid file {d.path('run', 'libvirtd.pid')}",
                  os.path.exists(d.path("run", "libvirtd.pid"))
                  and os.readlink(f"/proc/{d.proc.pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt"),
                  f"host_uuid {d.host_uuid}")

        chan = ["--parallel", "--parallel-connections", str(args.channels)]
        if A:
            dom = "mecom-lv"
            cur = start_guest("patched", A, dom, args, args.guest)
            # libvirt-side checks of the patch (both refuse before QEMU is asked)
            expect_error("patched-errors", A, "cbc without --parallel is refused",
                         ["--comp-methods", "cbc"], dom, B,
                         "Compression method 'cbc' is only supported with parallel migration")
            expect_error("patched-errors", A, "a cbc tunable without --comp-methods cbc is refused",
                         chan + ["--comp-cbc-zstd-level", "3"], dom, B,
                         "Turn cbc compression on to tune it")
            # errors QEMU reports through libvirt (destination QEMU started)
            expect_error("patched-errors", A, "an out-of-range cbc tunable is refused by QEMU",
                         chan + ["--comp-methods", "cbc", "--comp-cbc-zstd-level", "25"], dom, B,
                         "expects a value between 0 (high-ratio tier off) and 19", cur=cur)
            expect_error("patched-errors", A, "a cbc page cache smaller than a page is refused by QEMU",
                         chan + ["--comp-methods", "cbc", "--comp-cbc-cache-size", "100"], dom, B,
                         "multifd_cbc_cache_size", cur=cur)
            expect_error("patched-errors", A, "an unknown cbc mode is refused by QEMU",
                         chan + ["--comp-methods", "cbc", "--comp-cbc-mode", "turbo"], dom, B,
                         "does not accept value 'turbo'", cur=cur)
            cur = live_migrate("patched-cbc", A, B, dom, cur, base,
                               chan + ["--comp-methods", "cbc"],
                               {"multifd-channels": args.channels})
            tun = {"multifd-cbc-mode": "fixed", "multifd-cbc-similarity-threshold": 60,
                   "multifd-cbc-sparse-threshold": 80, "multifd-cbc-zstd-level": 3,
                   "multifd-cbc-cache-size": 128 << 20}
            cur = live_migrate("patched-tunables", B, A, dom, cur, base,
                         ["--p2p"] + chan + ["--comp-methods", "cbc", "--comp-cbc-mode", "fixed",
                                 "--comp-cbc-similarity-threshold", "60",
                                 "--comp-cbc-sparse-threshold", "80",
                                 "--comp-cbc-zstd-level", "3",
                                 "--comp-cbc-cache-size", str(128 << 20)], tun)
            # libvirt's TLS migration: its own tls-creds-x509 object on both
            # QEMUs, the main and every multifd connection encrypted
            cur = live_migrate("patched-tls", A, B, dom, cur, base,
                               chan + ["--comp-methods", "cbc", "--tls"],
                               {"multifd-channels": args.channels,
                                "tls-creds": LIBVIRT_TLS_CREDS})
            if args.baseline:
                # the same guest once more, B->A, with parallel migration and
                # no compression: the reference for the byte counts
                live_migrate("patched-none", B, A, dom, cur, base, chan,
                             {"multifd-channels": args.channels}, method="none")
            for d in (A, B):
                d.virsh("destroy", dom, check=False)
        if C:
            dom = "mecom-lv-global"
            cur = start_guest("stock", C, dom, args, args.guest,
                              extra_args=("-global", "migration.multifd-compression=cbc"))
            expect_error("stock-reject", C, "stock libvirt refuses --comp-methods cbc",
                         chan + ["--comp-methods", "cbc"], dom, D,
                         "Unsupported compression method 'cbc'")
            # only the source uses cbc: QEMU has no negotiation, the
            # destination must fail the migration and the source keep running
            expect_error("stock-mismatch", C, "source cbc, destination none fails cleanly",
                         chan, dom, D, "flags expected", cur=cur, drop_global=True)
            cur = live_migrate("stock-global", C, D, dom, cur, base, chan,
                               {"multifd-channels": args.channels}, via_global=True)
            # The caveat of the -global route: the method also applies to
            # mapped-ram (sparse) saves, which QEMU refuses to compress.
            save = os.path.join(base, "sparse.save")
            r = D.virsh("save", dom, save, "--image-format", "sparse", check=False, timeout=120)
            # QEMU 10.0 says one of these, depending on which check sees it first.
            check("stock-mapped-ram: sparse save of a -global cbc domain fails as documented",
                  r.returncode != 0 and any(m in r.stderr for m in MAPPED_RAM_ERRORS),
                  f"virsh said: {r.stderr.strip()!r}")
            state = D.domstate(dom)
            check("stock-mapped-ram: domain still running after the refused save",
                  state == "running", f"state '{state}'")
            if os.path.exists(save):
                os.unlink(save)
            D.virsh("destroy", dom, check=False)
    except (TestError, HarnessError, QMPError, OSError, AssertionError) as e:
        check("test ran to completion", False, str(e))
    finally:
        cleanup()

    SUMMARY["total_s"] = round(time.monotonic() - t_all, 1)
    failed = [r for r in RESULTS if not r[1]]
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": [{"check": n, "ok": ok, "detail": d} for n, ok, d in RESULTS],
                       "summary": SUMMARY}, f, indent=2)
    print(f"lvtest: {len(RESULTS) - len(failed)} passed, {len(failed)} failed, "
          f"{SUMMARY['total_s']} s", flush=True)
    if failed:
        print(f"lvtest: logs kept in {base}", flush=True)
        sys.exit(1)
    if not args.workdir:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
