"""Record tests/data/dtls-openssl.pcap: a DTLS 1.2 handshake (cookie exchange, fragmented certificate,
session ticket) and one line of data between two lab hosts, made by OpenSSL's own s_client and s_server.

    python -m tests.lab.record_dtls tests/data/dtls-openssl.pcap

Needs root, iproute2, tcpdump and openssl (installed by `make install`).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.lab.netns import bridge_capture, lab

PORT = 4433
SERVER_NAME = "dtls.vigil.test"


def record(out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="vigil-dtls-") as tmp:
        key, cert = Path(tmp) / "key.pem", Path(tmp) / "cert.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "3650",
             "-subj", f"/CN={SERVER_NAME}/O=Vigil Lab"],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        with lab(["ws1"], ["web"], lab_id="5ca1") as built:
            web, ws1 = built.hosts["web"], built.hosts["ws1"]
            web.spawn(
                "openssl", "s_server", "-dtls1_2", "-accept", f"{web.ip}:{PORT}", "-naccept", "1",
                "-cert", str(cert), "-key", str(key), "-quiet", stdin=subprocess.PIPE,
            )  # fmt: skip
            with bridge_capture(built, out, settle_s=1.0):
                client = ws1.run(
                    "sh", "-c",
                    f"(echo 'hello over dtls'; sleep 1) | openssl s_client -dtls1_2 -brief "
                    f"-connect {web.ip}:{PORT} -servername {SERVER_NAME}",
                    timeout=20,
                )  # fmt: skip
                print(client.stderr.strip().splitlines()[-1:] or client.returncode, file=sys.stderr)
    print(f"wrote {out} ({out.stat().st_size} bytes)", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    record(parser.parse_args().out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
