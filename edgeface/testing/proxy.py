"""A TCP proxy between a client and the broker whose link can be cut, for fault injection.

``cut()`` resets every open connection and refuses new ones until ``restore()``: what a unit sees
when its cellular link drops. ``stall()`` keeps connections open but stops forwarding, like a
link that silently loses packets (the client notices through keep-alive and acknowledgement
timeouts), and ``stall("down")`` lets messages reach the broker while holding its
acknowledgements back.
"""

from __future__ import annotations

import selectors
import socket
import struct
import threading
import time

from .broker import free_port


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``target``; runs in its own thread."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1", port: int | None = None) -> None:
        self.target = (target_host, target_port)
        self.port = port or free_port()
        self._listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self._listener.setblocking(False)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._listener, selectors.EVENT_READ, None)
        self._peers: dict[socket.socket, socket.socket] = {}
        self._upstream: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._mode = "open"  # open | cut | stalled
        self._stop = False
        self.cuts = 0
        self._thread = threading.Thread(target=self._run, name="tcp-proxy", daemon=True)
        self._thread.start()

    def cut(self) -> None:
        """Reset every connection and refuse new ones."""
        with self._lock:
            self._mode = "cut"
            self.cuts += 1
            for s in list(self._peers):
                self._drop(s, reset=True)

    def stall(self, direction: str = "both") -> None:
        """Stop forwarding bytes, keeping connections open.

        ``direction="down"`` still forwards client to broker but holds what the broker sends back
        (its acknowledgements): the broker has a message, the client never hears so.
        """
        if direction not in ("both", "down"):
            raise ValueError("direction must be 'both' or 'down'")
        with self._lock:
            self._mode = "stalled" if direction == "both" else "stalled_down"

    def restore(self) -> None:
        """Forward again; stalled connections resume, cut ones stay closed."""
        with self._lock:
            self._mode = "open"

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        with self._lock:
            for s in list(self._peers):
                self._drop(s)
        self._listener.close()
        self._sel.close()

    @property
    def connections(self) -> int:
        return len(self._peers) // 2

    def _drop(self, s: socket.socket, reset: bool = False) -> None:
        other = self._peers.pop(s, None)
        for sock in (s, other):
            if sock is None:
                continue
            self._peers.pop(sock, None)
            self._upstream.discard(sock)
            try:
                self._sel.unregister(sock)
            except (KeyError, ValueError):
                pass
            if reset:  # RST instead of FIN: an abrupt link loss
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
            sock.close()

    def _run(self) -> None:
        while not self._stop:
            events = self._sel.select(timeout=0.05)
            held = False
            with self._lock:
                for key, _ in events:
                    sock = key.fileobj
                    if sock is self._listener:
                        self._accept()
                    elif sock in self._peers:
                        if self._mode == "open" or (self._mode == "stalled_down" and sock not in self._upstream):
                            self._pump(sock)
                        else:
                            held = True
            if held:
                time.sleep(0.02)  # held sockets stay readable; do not spin on them

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except OSError:
            return
        if self._mode == "cut":
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
            return
        try:
            upstream = socket.create_connection(self.target, timeout=2)
        except OSError:
            client.close()
            return
        for s in (client, upstream):
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._peers[client], self._peers[upstream] = upstream, client
        self._upstream.add(upstream)
        self._sel.register(client, selectors.EVENT_READ, None)
        self._sel.register(upstream, selectors.EVENT_READ, None)

    def _pump(self, s: socket.socket) -> None:
        other = self._peers[s]
        try:
            data = s.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            self._drop(s)
            return
        if not data:
            self._drop(s)
            return
        try:
            other.setblocking(True)
            other.sendall(data)
            other.setblocking(False)
        except OSError:
            self._drop(s)
