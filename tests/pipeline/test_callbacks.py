"""pipeline.callbacks: which callback URLs are refused, and signatures a receiver can verify."""
from __future__ import annotations

import time

import pytest

from pipeline.callbacks import CallbackURLError, check_url, sign, verify


@pytest.mark.parametrize("url", ["http://127.0.0.1/x", "http://localhost:8000/x", "http://10.1.2.3/x",
                                 "http://192.168.0.7/x", "http://169.254.169.254/latest/meta-data",
                                 "http://[::1]/x", "http://0.0.0.0/x"])
def test_private_loopback_and_link_local_targets_are_refused(url):
    with pytest.raises(CallbackURLError, match="non-public"):
        check_url(url, allow_private=False)
    check_url(url, allow_private=True)  # a setting allows them (tests and private deployments)


def test_only_absolute_http_urls_are_accepted():
    for url in ("ftp://example.com/x", "file:///etc/passwd", "/relative", "http://"):
        with pytest.raises(CallbackURLError, match="http"):
            check_url(url, allow_private=True)
    check_url("https://93.184.216.34/hook", allow_private=False)  # a public address passes


@pytest.mark.parametrize("url", ["http://[64:ff9b::a00:1]/x",  # NAT64 of 10.0.0.1
                                 "http://[64:ff9b::7f00:1]/x",  # NAT64 of 127.0.0.1
                                 "http://[2002:a9fe:a9fe::1]/x",  # 6to4 of 169.254.169.254
                                 "http://[::ffff:192.168.0.7]/x"])  # IPv4-mapped
def test_private_addresses_inside_ipv6_forms_are_refused(url):
    with pytest.raises(CallbackURLError, match="non-public"):
        check_url(url, allow_private=False)


def test_a_refusal_never_names_the_internal_address():
    with pytest.raises(CallbackURLError) as refused:
        check_url("http://localhost:8000/x", allow_private=False)
    assert "127.0.0.1" not in str(refused.value) and "::1" not in str(refused.value)


def test_the_vetted_addresses_are_returned_for_the_connection():
    assert check_url("https://93.184.216.34/hook", allow_private=False) == ["93.184.216.34"]


def test_standard_webhooks_signatures_verify_with_the_reference_library_and_tampering_is_caught():
    from standardwebhooks import Webhook

    from pipeline.store.keys import new_signing_secret

    secret, body = new_signing_secret(), b'{"id":"x","status":"succeeded"}'
    headers = sign(secret, "job_x_succeeded", int(time.time()), body)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    Webhook(secret).verify(body, headers)  # the reference implementation accepts it (raises otherwise)
    assert verify(secret, headers, body)
    assert not verify(secret, headers, body + b" ")
    assert not verify(new_signing_secret(), headers, body)
    old = sign(secret, "job_x_succeeded", int(time.time()) - 3600, body)
    assert not verify(secret, old, body)  # too old: a replay
