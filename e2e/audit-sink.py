#!/usr/bin/env python3
"""An audit webhook for the fault tests: HTTPS on 127.0.0.1, every POSTed event appended to a
file as one JSON line, 200 for each. Stopping it is how a test takes the webhook down.

    audit-sink.py PORT CERT KEY OUT-FILE
"""
import http.server
import json
import ssl
import sys

port, cert, key, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]


class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        events = json.loads(body)
        with open(out, "a") as f:
            for ev in events if isinstance(events, list) else [events]:
                f.write(json.dumps(ev) + "\n")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Sink)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
server.serve_forever()
