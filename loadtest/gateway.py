"""One simulated PGW: a Diameter peer connection carrying its sessions' CCRs.

The peer procedures are the client side of RFC 6733: CER/CEA first
(section 5.3), DWA for every DWR (5.5), DPR/DPA at the end (5.4). Traffic is
batched both ways: each wakeup reads everything the socket has, the compiled
`Generator.step` judges every answer in it and encodes every request that
may go, and they all leave in one send.

A gateway outlives its connections. When a reconnect storm drops it, or the
server closes the connection, what was in flight is resent with the T-bit
on the next connection (RFC 6733 section 5.5.4, RFC 4006 section 7), so
the sessions carry on and nothing is silently lost; the time spent
reconnecting shows in those requests' latency.
"""
from __future__ import annotations

import contextlib
import socket
import struct
import time
from dataclasses import dataclass

import numpy as np
import trio

from . import codec
from .sessions import Generator

RX_BUFFER = 1 << 22


def now_ns() -> int:
    return time.perf_counter_ns()


class PeerError(Exception):
    """The server broke the Diameter peer procedures, or the connection."""


@dataclass
class PeerCounts:
    connects: int = 0
    connect_failures: int = 0
    drops: int = 0               # by a reconnect storm
    server_disconnects: int = 0  # the server closed or reset the connection, or sent DPR
    dwr_answered: int = 0
    unexpected: int = 0          # messages a PGW does not expect (counted, answered with nothing)


class Gateway:
    """One PGW. `run` sends while `clock.send_until_ns` allows and returns once
    `clock.finished` is set; `drop` makes it leave and come back."""

    def __init__(self, index: int, host: str, port: int, origin_host: str,
                 origin_realm: str, host_ip: str, generator: Generator, clock,
                 timeout: float, tick: float, reconnect_delay: float):
        self.index, self.host, self.port = index, host, port
        self.origin_host, self.origin_realm, self.host_ip = origin_host, origin_realm, host_ip
        self.gen, self.clock = generator, clock
        self.timeout, self.tick_ns = timeout, int(tick * 1e9)
        self.reconnect_delay = reconnect_delay
        self.counts = PeerCounts()
        self.notes: dict[str, int] = {}  # what went wrong, and how often
        self.connected = False
        self._stream: trio.SocketStream | None = None
        self._rx = np.zeros(RX_BUFFER, np.uint8)
        self._fill = 0
        self._ids = 1  # hop-by-hop / end-to-end ids of our control requests
        self._poke = trio.Event()  # the writer has something to look at
        self._leave: bool | None = None  # None, or True for graceful, False for abrupt
        self._ending: str | None = None  # why the reader stopped
        self._control: list[bytes] = []  # answers to the server's DWR and DPR

    # --- connection -----------------------------------------------------------

    async def connect(self) -> None:
        """TCP connect and CER/CEA; raises OSError or PeerError."""
        with trio.fail_after(self.timeout):
            stream = await trio.open_tcp_stream(self.host, self.port)
            try:
                self._ids += 1
                await stream.send_all(codec.encode_cer(self.origin_host, self.origin_realm,
                                                       self.host_ip, self._ids, self._ids))
                self._fill = 0
                frames = []
                while not frames:
                    n = await stream.socket.recv_into(memoryview(self._rx)[self._fill:])
                    if n == 0:
                        raise PeerError("connection closed before the CEA")
                    self._fill += n
                    frames, _ = codec.split_frames(memoryview(self._rx)[:self._fill])
                start, end = frames[0]
                cea = codec.parse_answer(self._rx[start:end].tobytes())
            except ValueError as exc:
                stream.socket.close()
                raise PeerError(f"not a Diameter answer to the CER: {exc}") from None
            except BaseException:
                stream.socket.close()
                raise
        if cea.command != codec.CMD_CAPABILITIES_EXCHANGE or cea.is_request:
            stream.socket.close()
            raise PeerError(f"expected a CEA, got command {cea.command}")
        if cea.result_code != codec.DIAMETER_SUCCESS:
            stream.socket.close()
            raise PeerError(f"CEA Result-Code {cea.result_code}")
        self._rx[:self._fill - end] = self._rx[end:self._fill]
        self._fill -= end
        self._stream = stream
        self.connected = True
        self.counts.connects += 1

    def abort(self) -> None:
        """Close the connection at once, if there is one (the run cannot start)."""
        if self._stream is not None:
            self._stream.socket.close()
            self._stream, self.connected = None, False

    def drop(self, graceful: bool) -> None:
        """Leave now (abrupt: reset the socket) or after the answers (graceful: DPR)."""
        if self.connected and self._leave is None:
            self._leave = graceful
            self._poke.set()

    def wake(self) -> None:
        """The run's clock has news (the end): look at it now."""
        self._poke.set()

    # --- traffic --------------------------------------------------------------

    async def run(self) -> None:
        while True:
            if self._stream is not None:
                reason = await self._traffic()
                await self._close(reason)
            if self.clock.finished:
                return
            await trio.sleep(self.reconnect_delay)
            while not self.clock.finished:
                try:
                    await self.connect()
                    break
                except (OSError, PeerError, trio.TooSlowError) as exc:
                    self.counts.connect_failures += 1
                    self._note(f"reconnect failed: {exc or type(exc).__name__}")
                    await trio.sleep(max(self.reconnect_delay, 0.05))

    async def _traffic(self) -> str:
        """Until the run is over ("done"), a drop ("drop", "graceful") or the
        server leaves ("server").

        Reading and writing are separate tasks, as in a real gateway: one
        that blocked in a send without reading could deadlock with a server
        doing the same once both directions' socket buffers are full.
        """
        self._ending = None
        self._control = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._reader)
            reason = await self._writer()
            nursery.cancel_scope.cancel()
        return reason

    async def _writer(self) -> str:
        gen, stream = self.gen, self._stream
        next_expiry = now_ns() + self.tick_ns
        pause_until = None
        while True:
            self._poke = trio.Event()
            now = now_ns()
            if self._ending:
                if self._control:  # the DPA to the server's DPR
                    with trio.move_on_after(1), contextlib.suppress(trio.BrokenResourceError,
                                                                    OSError):
                        await stream.send_all(b"".join(self._control))
                return self._ending
            if self.clock.finished:
                return "done"
            if self._leave is False:
                return "drop"
            if self._leave and pause_until is None:
                pause_until = now + int(self.timeout * 1e9)
            if pause_until is not None and (gen.outstanding == 0 or now > pause_until):
                return "graceful"
            if now >= next_expiry:
                gen.expire(now)
                next_expiry = now + self.tick_ns
            n_out = gen.emit(now, 0 if pause_until is not None else self.clock.send_until_ns)
            control, self._control = b"".join(self._control), []
            try:
                if control:
                    await stream.send_all(gen.out[:n_out].tobytes() + control)
                elif n_out:
                    await stream.send_all(memoryview(gen.out)[:n_out])
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                return "server"
            if self._poke.is_set():
                continue
            wake = min(next_expiry, gen.next_due_ns)
            with trio.move_on_at(trio.current_time() + (wake - now_ns()) / 1e9):
                await self._poke.wait()

    async def _reader(self) -> None:
        """Judge every answer as it comes; wake the writer when slots free up."""
        gen, rx, stream = self.gen, self._rx, self._stream
        while True:
            try:
                n = await stream.socket.recv_into(memoryview(rx)[self._fill:])
            except OSError:
                n = 0
            if n == 0:
                return self._end("server")
            self._fill += n
            consumed, n_other = gen.read(rx, self._fill, now_ns())
            if consumed < 0:
                self._note("received bytes that are not a Diameter message")
                return self._end("server")
            if self._answer_control(n_other):
                return self._end("server")
            rx[:self._fill - consumed] = rx[consumed:self._fill]
            self._fill -= consumed
            if self._fill == len(rx):
                self._note("a message larger than the receive buffer")
                return self._end("server")
            if self._control or gen.may_send(now_ns()):
                self._poke.set()

    def _end(self, reason: str) -> None:
        self._ending = reason
        self._poke.set()

    def _answer_control(self, count: int) -> bool:
        """Queue answers to the non-CCA messages of this read; True when the server leaves."""
        leaving = False
        for i in range(count):
            start = int(self.gen.other[i])
            length = int.from_bytes(self._rx[start + 1:start + 4].tobytes(), "big")
            try:
                msg = codec.parse_answer(self._rx[start:start + length].tobytes())
            except ValueError:
                self.counts.unexpected += 1
                self._note("a malformed message")
                continue
            if msg.command == codec.CMD_DEVICE_WATCHDOG and msg.is_request:
                self._control.append(codec.encode_dwa(self.origin_host, self.origin_realm,
                                                      msg.hop_by_hop, msg.end_to_end))
                self.counts.dwr_answered += 1
            elif msg.command == codec.CMD_DISCONNECT_PEER and msg.is_request:
                self._control.append(codec.encode_dpa(self.origin_host, self.origin_realm,
                                                      msg.hop_by_hop, msg.end_to_end))
                self._note("the server sent DPR")
                leaving = True
            else:
                self.counts.unexpected += 1
                self._note(f"unexpected message: command {msg.command} flags {msg.flags:#x}")
        return leaving

    async def _close(self, reason: str) -> None:
        stream, self._stream = self._stream, None
        self.connected = False
        self._leave = None
        if reason == "drop":
            self.counts.drops += 1
            # An abrupt loss, as when a gateway or a link dies: RST, not FIN.
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                     struct.pack("ii", 1, 0))
            stream.socket.close()
        elif reason == "server":
            self.counts.server_disconnects += 1
            stream.socket.close()
        else:
            if reason == "graceful":
                self.counts.drops += 1
            await self._disconnect(stream)
        self.gen.requeue()

    async def _disconnect(self, stream) -> None:
        """DPR, then wait briefly for the DPA (RFC 6733 section 5.4)."""
        self._ids += 1
        try:
            await stream.send_all(codec.encode_dpr(self.origin_host, self.origin_realm,
                                                   self._ids, self._ids))
            with trio.move_on_after(min(self.timeout, 2.0)):
                buf = bytearray(self._rx[:self._fill].tobytes())
                while True:
                    frames, used = codec.split_frames(buf)
                    for start, _ in frames:
                        command = int.from_bytes(buf[start + 5:start + 8], "big")
                        if command == codec.CMD_DISCONNECT_PEER and not buf[start + 4] & 0x80:
                            return
                    del buf[:used]
                    data = await stream.receive_some(1 << 16)
                    if not data:
                        return
                    buf += data
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, ValueError):
            pass
        finally:
            self._fill = 0
            stream.socket.close()

    def _note(self, text: str) -> None:
        if text in self.notes or len(self.notes) < 20:
            self.notes[text] = self.notes.get(text, 0) + 1
