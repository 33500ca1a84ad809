"""The worker's UDP endpoints: datagrams that queue up while the event loop is busy
are read in batches (not one per turn of the loop) and every one is answered;
replies that meet a full send buffer wait and go out when it drains."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from radius import crypto
from radius.packet import decode
from radius.runner import ThreadedServer
from radius.server import _Endpoint
from radius.testing import PASSWORD, SECRET, UdpClient, access_request

pytestmark = pytest.mark.django_db(transaction=True)

PPP = [("Service-Type", 2), ("Framed-Protocol", 1)]


def test_a_burst_queued_behind_a_busy_loop_is_read_in_batches_and_all_answered(world, tmp_path):
    with ThreadedServer(reject_delay=0, state_dir=tmp_path, sync=False) as server, \
            UdpClient(server.auth_port) as nas:
        endpoint = next(e for e in server.worker.server.transports if e.kind == "auth")
        reads = []
        original = endpoint._readable

        def counting() -> None:
            reads.append(1)
            original()

        loop = server.worker.loop
        # re-register the reader with the counting wrapper, from the loop's own thread
        loop.call_soon_threadsafe(lambda: (loop.remove_reader(endpoint.sock.fileno()),
                                           loop.add_reader(endpoint.sock.fileno(), counting)))
        time.sleep(0.1)
        loop.call_soon_threadsafe(time.sleep, 0.5)  # the loop is busy for half a second
        time.sleep(0.05)
        sent = {}
        for i in range(300):
            raw, _ = access_request("alice", SECRET, password=PASSWORD, extra=PPP, ident=i % 256)
            sent[raw[4:20]] = raw
            nas.send(raw)
        answered = 0
        while answered < 300:
            reply = nas.recv(timeout=5)
            assert reply is not None, f"only {answered} of 300 answered"
            assert decode(reply).code == crypto.ACCESS_ACCEPT
            answered += 1
        # 300 datagrams waiting at once: read 64 per wake-up, not one per turn of the loop
        assert len(reads) <= 10


class _FullOnce(socket.socket):
    """A UDP socket whose send buffer is 'full' for the first ``full`` sends."""

    full = 1

    def sendto(self, data, addr):
        if self.full:
            self.full -= 1
            raise BlockingIOError
        return super().sendto(data, addr)


def test_replies_meeting_a_full_send_buffer_wait_and_go_out_in_order():
    class Server:
        def handle(self, data, addr, endpoint, kind):
            endpoint.sendto(b"re:" + data, addr)

    async def run() -> list[bytes]:
        sock = _FullOnce(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        endpoint = _Endpoint(Server(), sock, "auth")
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.bind(("127.0.0.1", 0))
        client.settimeout(2)
        try:
            for word in (b"one", b"two", b"three"):
                client.sendto(word, sock.getsockname())
            got = []
            for _ in range(3):
                await asyncio.sleep(0.05)
                while True:
                    try:
                        got.append(client.recv(100))
                    except (BlockingIOError, TimeoutError):
                        break
                    client.settimeout(0.01)
            return got
        finally:
            endpoint.close()
            client.close()

    assert asyncio.run(run()) == [b"re:one", b"re:two", b"re:three"]
