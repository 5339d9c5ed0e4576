"""Migration over TLS: test certificates and QEMU's x509 credentials.

make_certs(dir) writes what QEMU's tls-creds-x509 reads from a directory
(ca-cert.pem, server-cert.pem/-key.pem, client-cert.pem/-key.pem): a
self-signed CA, and a server and a client certificate it signed, for
"localhost" and 127.0.0.1, with the key usages QEMU checks
(crypto/tlscredsx509.c: CA basicConstraints and keyCertSign; server and
client purposes).  Made with openssl, fresh for each run, valid one day.

add_creds(vm, dir, side) creates the credentials object in a running QEMU
over QMP and returns the migrate-set-parameters members that use it: the
destination is the TLS server and verifies the client's certificate, the
source the client, checking the server's name against "localhost".
"""

import os
import subprocess

from qemu import HarnessError

CREDS_ID = "mecom-tls"
HOSTNAME = "localhost"

_EXT = {
    "ca": "basicConstraints=critical,CA:TRUE\n"
          "keyUsage=critical,keyCertSign,cRLSign\n",
    "server": "basicConstraints=critical,CA:FALSE\n"
              "keyUsage=critical,digitalSignature,keyEncipherment\n"
              "extendedKeyUsage=serverAuth\n"
              f"subjectAltName=DNS:{HOSTNAME},IP:127.0.0.1\n",
    "client": "basicConstraints=critical,CA:FALSE\n"
              "keyUsage=critical,digitalSignature,keyEncipherment\n"
              "extendedKeyUsage=clientAuth\n",
}


def _openssl(*args, cwd):
    p = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if p.returncode != 0:
        raise HarnessError(f"openssl {args[0]} failed: {p.stderr.strip()[-400:]}")


def make_certs(d):
    """Writes a CA, a server and a client certificate with their keys into d."""
    os.makedirs(d, exist_ok=True)
    for name in ("server", "client"):
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(_EXT[name])
    with open(os.path.join(d, "ca.cnf"), "w") as f:
        f.write("[req]\ndistinguished_name = dn\n[dn]\n[ca]\n" + _EXT["ca"])
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-subj", "/CN=mecom test CA", "-keyout", "ca-key.pem", "-out", "ca-cert.pem",
             "-config", "ca.cnf", "-extensions", "ca", cwd=d)
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={HOSTNAME}",
                 "-keyout", f"{name}-key.pem", "-out", f"{name}.csr", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca-cert.pem", "-CAkey", "ca-key.pem",
                 "-CAcreateserial", "-days", "1", "-extfile", f"{name}.ext",
                 "-out", f"{name}-cert.pem", cwd=d)
    return d


def add_creds(vm, d, side):
    """Adds the x509 credentials to vm (side "src" or "dst"); returns the
    migrate-set-parameters members that make its migration use them."""
    endpoint = "server" if side == "dst" else "client"
    vm.qmp.execute("object-add", {"qom-type": "tls-creds-x509", "id": CREDS_ID, "dir": d,
                                  "endpoint": endpoint, "verify-peer": True})
    params = {"tls-creds": CREDS_ID}
    if side == "src":
        params["tls-hostname"] = HOSTNAME
    return params
