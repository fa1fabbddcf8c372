"""Run both fakes as one process: python -m tests.fakes.run --cert-dir DIR [--dropbox-port N]
[--firefly-port M]. Prints {"dropbox": {...}, "firefly": {...}} (url, host, port, ca) as one
JSON line when both listen; serves until SIGTERM or SIGINT."""
from __future__ import annotations

import argparse
import json
import signal
import threading

from .dropbox_fake import DropboxFake
from .firefly_fake import FireflyFake
from .tls import make_tls


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cert-dir", required=True)
    parser.add_argument("--dropbox-port", type=int, default=0)
    parser.add_argument("--firefly-port", type=int, default=0)
    args = parser.parse_args(argv)
    tls = make_tls(args.cert_dir)
    fakes = {"dropbox": DropboxFake().start(tls, args.dropbox_port),
             "firefly": FireflyFake().start(tls, args.firefly_port)}
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(json.dumps({name: {"url": f.base_url, "host": f.host, "port": f.port, "ca": tls.ca}
                      for name, f in fakes.items()}), flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for fake in fakes.values():
            fake.stop()


if __name__ == "__main__":
    main()
