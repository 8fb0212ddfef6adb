"""Ports the launcher and the harnesses pick: free, and out of the kernel's ephemeral range."""

from __future__ import annotations

import socket
from pathlib import Path

from service.ingress import LINUX_EPHEMERAL, ephemeral_ports, free_port


def test_picked_ports_are_free_and_no_connection_can_be_given_them() -> None:
    # A port from the ephemeral range was taken by another service's Ray start before HAProxy
    # bound it (tests/loadtest/test_faults.py, on a clean clone): "Address already in use".
    ephemeral = ephemeral_ports()
    ports = {free_port() for _ in range(20)}
    assert len(ports) > 1 and not any(port in ephemeral for port in ports)
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_the_range_is_read_from_the_kernel_or_linuxs_default(tmp_path: Path) -> None:
    narrow = tmp_path / "range"
    narrow.write_text("40000\t40100\n")
    assert ephemeral_ports(narrow) == range(40000, 40101)
    assert ephemeral_ports(tmp_path / "missing") == range(
        LINUX_EPHEMERAL[0], LINUX_EPHEMERAL[1] + 1
    )
