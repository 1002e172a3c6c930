"""hello-python: a small Flask service on kiln's python base.

`app.py --check` imports every dependency (MarkupSafe's compiled speedups
included), serves one request through a real socket on a loopback port and
exits 0 only if it answered, so that a container without a network can
still prove the image works. Without `--check` it serves on $PORT.
"""

import importlib
import json
import os
import platform
import sys
import threading
import urllib.request

from flask import Flask
from werkzeug.serving import make_server

# Every dependency of requirements.txt, by import name.
DEPENDENCIES = ["flask", "werkzeug", "jinja2", "markupsafe", "itsdangerous", "click", "blinker"]

app = Flask(__name__)


@app.get("/")
def hello():
    return f"hello from kiln (linux/{platform.machine()}, uid {os.getuid()}, python {platform.python_version()})\n"


@app.get("/healthz")
def healthz():
    return "ok\n"


def self_check() -> int:
    versions = {}
    for name in DEPENDENCIES:
        module = importlib.import_module(name)
        versions[name] = getattr(module, "__version__", "imported")
    # The C extension, not the pure-Python fallback.
    speedups = importlib.import_module("markupsafe._speedups")
    print("speedups:", os.path.basename(speedups.__file__))
    server = make_server("127.0.0.1", 0, app)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        for path in ("/healthz", "/"):
            with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}{path}", timeout=5) as r:
                if r.status != 200:
                    print(f"{path}: status {r.status}", file=sys.stderr)
                    return 1
                sys.stdout.write(f"{path}: {r.read().decode()}")
    finally:
        server.shutdown()
    print("imported:", json.dumps(versions, sort_keys=True))
    return 0


if __name__ == "__main__":
    if "--check" in sys.argv[1:]:
        sys.exit(self_check())
    app.run(host="0.0.0.0", port=int(os.environ.get("PORT", "8080")))
