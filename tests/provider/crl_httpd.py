#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A CRL server for test_crl_fetch.sh, on 127.0.0.1 and a free port.

  crl_httpd.py DIR LOG

/crl/NAME   the file DIR/NAME, with an ETag (SHA-256 of its bytes) and a
            Last-Modified; a request whose If-None-Match matches gets 304
/missing    404
/slow       the CRL after 5 seconds
/big        a body of 4 MiB (Content-Length says so)
/redirect   302 to /crl/current.pem
/loop       302 to itself
Prints "PORT N" once listening; appends "PATH STATUS IF-NONE-MATCH" per
request to LOG.
"""
import hashlib
import http.server
import os
import sys
import time
from email.utils import formatdate

root, log_path = sys.argv[1], sys.argv[2]


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):
        pass

    def note(self, status):
        with open(log_path, "a") as log:
            log.write("%s %d %s\n" % (self.path, status, self.headers.get("If-None-Match", "-")))

    def answer(self, status, body=b"", headers=()):
        self.note(status)
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def serve_file(self, name):
        path = os.path.join(root, os.path.basename(name))
        if not os.path.isfile(path):
            return self.answer(404)
        with open(path, "rb") as f:
            body = f.read()
        etag = '"%s"' % hashlib.sha256(body).hexdigest()
        modified = formatdate(os.stat(path).st_mtime, usegmt=True)
        if self.headers.get("If-None-Match") == etag:
            return self.answer(304, headers=[("ETag", etag)])
        self.answer(200, body, [("ETag", etag), ("Last-Modified", modified)])

    def do_GET(self):
        if self.path.startswith("/crl/"):
            self.serve_file(self.path[len("/crl/"):])
        elif self.path == "/slow":
            time.sleep(5)
            self.serve_file("current.pem")
        elif self.path == "/big":
            self.note(200)
            self.send_response(200)
            self.send_header("Content-Length", str(4 << 20))
            self.end_headers()
            try:
                for _ in range(64):
                    self.wfile.write(b"\0" * 65536)
            except (BrokenPipeError, ConnectionResetError):
                pass
        elif self.path == "/redirect":
            self.answer(302, headers=[("Location", "/crl/current.pem")])
        elif self.path == "/loop":
            self.answer(302, headers=[("Location", "/loop")])
        else:
            self.answer(404)


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print("PORT %d" % server.server_address[1], flush=True)
server.serve_forever()
