"""agnhost netexec's UDP side answers: its datagram protocol on a real socket on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket

from control.kubelet.workloads import _UDP


def test_the_udp_server_replies() -> None:
    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _UDP(lambda message, peer: f"echo {message}"),
                                                           local_addr=("127.0.0.1", 0))
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.setblocking(False)
        try:
            await loop.sock_sendto(client, b"hostname", ("127.0.0.1", transport.get_extra_info("sockname")[1]))
            return await asyncio.wait_for(loop.sock_recv(client, 100), 10)
        finally:
            client.close()
            transport.close()

    assert asyncio.run(main()) == b"echo hostname"
