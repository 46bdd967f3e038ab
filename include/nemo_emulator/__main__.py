"""Run the NeMo + NIM emulator: ``python -m include.nemo_emulator --port 8765``.

It is an EMULATOR for tests and demos, not NVIDIA NeMo. See docs/emulator.md.
"""

from __future__ import annotations

import logging
import os
import socket
import sys

import uvicorn

from include.nemo_emulator.app import create_app
from include.nemo_emulator.options import EmulatorOptions, parse_options

log = logging.getLogger("include.nemo_emulator")


class _ReadyServer(uvicorn.Server):
    """A uvicorn server that writes its bound port to a file once it accepts connections."""

    def __init__(self, config: uvicorn.Config, ready_file: str | None, port: int) -> None:
        super().__init__(config)
        self._ready_file = ready_file
        self._port = port

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self._ready_file and self.started:
            tmp = self._ready_file + ".tmp"
            with open(tmp, "w", encoding="utf-8") as handle:
                handle.write(str(self._port))
            os.replace(tmp, self._ready_file)  # atomic: a reader never sees a half-written port


def serve(options: EmulatorOptions) -> None:
    """Bind (port 0 = any free port), build the app and serve until interrupted."""
    logging.basicConfig(level=options.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((options.host, options.port))
    except OSError as exc:
        print(f"nemo emulator: cannot bind {options.host}:{options.port}: {exc.strerror}", file=sys.stderr)
        raise SystemExit(2) from None
    port = sock.getsockname()[1]
    app = create_app(options)
    config = uvicorn.Config(app, log_level=options.log_level.lower(), access_log=False, lifespan="on")
    server = _ReadyServer(config, options.ready_file, port)
    print(f"NeMo emulator (not NVIDIA NeMo) on http://{options.host}:{port} "
          f"(NIM at /nim, Data Store HF API at /v1/hf, data in {app.state.data_dir})", flush=True)
    server.run(sockets=[sock])


def main(argv: list[str] | None = None) -> None:
    serve(parse_options(argv))


if __name__ == "__main__":
    main()
