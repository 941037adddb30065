"""``app.wsgi``: a WSGI application (Flask) under a threaded WSGI server, one thread per
request as Werkzeug's threaded server (or the standard library's) runs it.

:class:`PoolAtWsgiRequest` does for WSGI what app/asgi.py's middleware does for ASGI: a
box per request in the context variable the pool's checkout fills, returned in the
response's headers. WSGI calls ``start_response`` after the view has run, so the box is
complete by then.
"""

from __future__ import annotations

import threading
from typing import Any

from .asgi import CURRENT, TIMEOUT_HEADER, WAIT_HEADER, RequestBox


class PoolAtWsgiRequest:
    def __init__(self, app: Any) -> None:
        self.app = app
        self._lock = threading.Lock()
        self.in_flight = 0

    def __call__(self, environ: Any, start_response: Any) -> Any:
        box = RequestBox()
        token = CURRENT.set(box)
        with self._lock:
            self.in_flight += 1

        def start_with_figures(status: str, headers: list, exc_info: Any = None) -> Any:
            headers = [*headers, (WAIT_HEADER.decode(), str(box.wait_us))]
            if box.timeout is not None:
                text = box.timeout.encode("ascii", "replace")[:400].decode("ascii")
                headers.append((TIMEOUT_HEADER.decode(), text))
            return start_response(status, headers, exc_info)

        try:
            # the body is produced here too: a streamed response keeps its session until
            # it ends, and its checkouts land in this request's box
            return list(self.app(environ, start_with_figures))
        finally:
            CURRENT.reset(token)
            with self._lock:
                self.in_flight -= 1


def start_wsgi_server(app: Any) -> tuple[Any, threading.Thread, int]:
    """A threaded WSGI server on a loopback port: Werkzeug's when installed (Flask brings
    it), else the standard library's with a thread per request."""
    server: Any
    try:
        from werkzeug.serving import make_server

        server = make_server("127.0.0.1", 0, app, threaded=True)
    except ImportError:
        import socketserver
        from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
        from wsgiref.simple_server import make_server as make

        class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
            daemon_threads = True

        server = make("127.0.0.1", 0, app, ThreadingWSGIServer, WSGIRequestHandler)
    thread = threading.Thread(target=server.serve_forever, name="poolbench-wsgi", daemon=True)
    thread.start()
    return server, thread, server.server_port
