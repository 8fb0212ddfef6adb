"""service.proxy's request side: the client's deadline becomes Ray's proxy timeout."""

from __future__ import annotations

import pytest

from service.proxy import DEADLINE_GRACE_S, RAY_TIMEOUT_HEADER, with_ray_deadline


def test_a_client_deadline_becomes_rays_timeout_one_grace_later() -> None:
    headers = with_ray_deadline([(b"x-request-timeout-ms", b"2500"), (b"host", b"h")])
    assert (RAY_TIMEOUT_HEADER, f"{2.5 + DEADLINE_GRACE_S:.3f}".encode()) in headers
    assert (b"host", b"h") in headers


@pytest.mark.parametrize("raw", [b"0", b"-5", b"soon", b"nan", b"inf"])
def test_no_usable_deadline_sets_no_timeout(raw: bytes) -> None:
    # The replica answers such a header with 400; the proxy just leaves the timeout alone.
    headers = with_ray_deadline([(b"x-request-timeout-ms", raw)])
    assert RAY_TIMEOUT_HEADER not in dict(headers)


def test_clients_cannot_switch_off_rays_timeout_or_disconnect_handling() -> None:
    sent = [(b"X-Request-Timeout-Seconds", b"-1"), (b"x-request-disconnect-disabled", b"?1")]
    assert with_ray_deadline(sent) == []
