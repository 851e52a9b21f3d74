"""A TCP proxy between a client and PostgreSQL that can cut the connection
at a chosen moment: a real network fault, for the cluster store's tests.

`cut_after_commit`: the next COMMIT the client sends reaches the server,
and the connection is closed before the server's answer comes back, so the
client cannot know whether it committed (RFC-free, but exactly the case
docs/cluster.md's "unknown outcome" is about)."""
from __future__ import annotations

import socket
import threading


class CuttingProxy:
    def __init__(self, target_port: int):
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut_after_commit = False
        self.cuts = 0
        self.open = threading.Event()         # clear: a partition, nothing passes either way (held, not refused)
        self.open.set()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            state = {"cut": False}
            threading.Thread(target=self._pipe, args=(client, server, state, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, state, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, state: dict, upstream: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                self.open.wait()            # a partition: what was sent waits, as packets dropped and resent
                if not upstream and state["cut"]:
                    break               # the server's answer to the COMMIT never arrives
                if upstream and self.cut_after_commit and b"COMMIT" in data:
                    self.cut_after_commit = False
                    self.cuts += 1
                    state["cut"] = True     # before it is sent: the answer may come at once
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def partition(self) -> None:
        self.open.clear()

    def heal(self) -> None:
        self.open.set()

    def close(self) -> None:
        self._closed = True
        self.listener.close()
