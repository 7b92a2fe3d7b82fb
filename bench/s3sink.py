"""A throwaway S3 endpoint that accepts uploads and discards the bytes (bench only).

Just enough of the S3 API for PutObject, multipart uploads and their listing, so that the
RSS of an uploader can be measured on multi-GB files without a server that stores them.
Run: ``python bench/s3sink.py PORT``.
"""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    def _drain(self) -> None:
        left = int(self.headers.get("Content-Length") or 0)
        while left > 0:
            got = self.rfile.read(min(left, 1 << 20))
            if not got:
                break
            left -= len(got)

    def _reply(self, code: int, body: str = "", headers: dict | None = None) -> None:
        data = body.encode()
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data and self.command != "HEAD":
            self.wfile.write(data)

    def do_PUT(self) -> None:
        self._drain()
        self._reply(200, headers={"ETag": '"sink"'})

    def do_POST(self) -> None:
        self._drain()
        if "uploads" in self.path.split("?", 1)[-1].split("&"):
            self._reply(200, f"<InitiateMultipartUploadResult {NS}><Bucket>b</Bucket><Key>k</Key>"
                             "<UploadId>sink-upload</UploadId></InitiateMultipartUploadResult>")
        else:
            self._reply(200, f"<CompleteMultipartUploadResult {NS}><Bucket>b</Bucket><Key>k</Key>"
                             '<ETag>"sink-2"</ETag></CompleteMultipartUploadResult>')

    def do_GET(self) -> None:
        self._reply(200, f"<ListMultipartUploadsResult {NS}><Bucket>b</Bucket></ListMultipartUploadsResult>")

    def do_HEAD(self) -> None:
        self._reply(404)

    def do_DELETE(self) -> None:
        self._reply(204)


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
