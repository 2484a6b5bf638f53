#!/usr/bin/env python3
"""A workload for the traffic-management walk-through (docs/traffic-management.md):
an HTTP/1.1 server that answers with its name and misbehaves on demand, as the
end-to-end tests' backends do (crates/mizzen/tests/common/backend.rs).

    python3 examples/traffic/backend.py 127.0.50.2 reviews-v1

Every answer has `x-instance: NAME` and the body NAME. Per request, headers sent
through the mesh change it: `x-backend-status: 503` answers that status,
`x-backend-delay-ms: 2000` waits that long first. Per instance, a request straight
to the workload (not through the mesh) sets how it answers from then on:

    curl 127.0.50.2:9080/_mode/fail-500    # every request 500
    curl 127.0.50.2:9080/_mode/flaky-500   # every other request 500
    curl 127.0.50.2:9080/_mode/hold        # hang until the mode changes
    curl 127.0.50.2:9080/_mode/reset       # drop the connection, no answer
    curl 127.0.50.2:9080/_mode/answer      # back to normal
"""

import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ADDRESS, NAME = sys.argv[1], sys.argv[2]
PORT = int(sys.argv[3]) if len(sys.argv) > 3 else 9080

changed = threading.Condition()
state = {"mode": "answer", "count": 0}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path.startswith("/_mode/"):
            with changed:
                state["mode"], state["count"] = self.path[len("/_mode/"):], 0
                changed.notify_all()
            return self.reply(200, f"{NAME}: mode {state['mode']}\n")
        time.sleep(int(self.headers.get("x-backend-delay-ms", "0")) / 1000)
        with changed:
            changed.wait_for(lambda: state["mode"] != "hold")
            mode, nth = state["mode"], state["count"]
            state["count"] += 1
        status = 200
        if mode == "reset":
            self.close_connection = True
            return
        if mode.startswith("fail-"):
            status = int(mode[len("fail-"):])
        if mode.startswith("flaky-") and nth % 2 == 0:
            status = int(mode[len("flaky-"):])
        status = int(self.headers.get("x-backend-status", status))
        self.reply(status, NAME)

    do_POST = do_GET

    def reply(self, status, body):
        data = body.encode()
        self.send_response(status)
        self.send_header("content-length", str(len(data)))
        self.send_header("x-instance", NAME)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


ThreadingHTTPServer((ADDRESS, PORT), Handler).serve_forever()
