"""A TCP proxy on loopback that the test controls: it forwards connections to a target and
can make chosen connections die silently (no FIN, no RST: bytes just stop flowing), as a NAT
or load balancer that drops an idle flow does."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from dataclasses import dataclass, field

__all__ = ["TcpProxy"]


@dataclass
class _Link:
    client: socket.socket
    server: socket.socket
    sent: bytearray = field(default_factory=bytearray)  # the client's first bytes, to classify
    dead: bool = False


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target``; :meth:`drop_silently` kills links."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._links: list[_Link] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self.refusing = False
        """While set, new connections are accepted and closed at once (the target is down)."""
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self._listener.settimeout(0.2)
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.refusing:
                client.close()
                continue
            server = socket.create_connection(self.target)
            link = _Link(client, server)
            with self._lock:
                self._links.append(link)
            threading.Thread(target=self._pump, args=(link,), daemon=True).start()

    def _pump(self, link: _Link) -> None:
        with contextlib.suppress(OSError, ValueError):  # a link cut from another thread
            self._forward(link)
        self._close(link)

    def _forward(self, link: _Link) -> None:
        ends = {link.client: link.server, link.server: link.client}
        while not self._closing.is_set():
            ready, _, _ = select.select(list(ends), [], [], 0.2)
            for sock in ready:
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:  # one end closed: close the other
                    return
                if sock is link.client and len(link.sent) < 4096:
                    link.sent += data[:4096]
                if not link.dead:  # a dead link swallows everything, both ways
                    ends[sock].sendall(data)

    @staticmethod
    def _close(link: _Link) -> None:
        for sock in (link.client, link.server):
            with contextlib.suppress(OSError):
                sock.close()

    def drop_silently(self, marker: bytes) -> int:
        """Make every open link whose client has sent ``marker`` (e.g. ``b"SUBSCRIBE"``)
        stop forwarding, without closing it; how many links were dropped."""
        with self._lock:
            links = [link for link in self._links if marker in bytes(link.sent).upper()]
        for link in links:
            link.dead = True
        return len(links)

    def cut(self) -> None:
        """Close every open link (both ends see the connection drop)."""
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            self._close(link)

    def close(self) -> None:
        """Stop accepting and close every link."""
        self._closing.set()
        self._listener.close()
        with self._lock:
            for link in self._links:
                self._close(link)
