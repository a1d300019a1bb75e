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


def test_signatures_verify_and_tampering_is_detected():
    body = b'{"id":"x","status":"succeeded"}'
    header = sign("s3cret", int(time.time()), body)
    assert verify("s3cret", header, body)
    assert not verify("s3cret", header, body + b" ")
    assert not verify("other", header, body)
    assert not verify("s3cret", sign("s3cret", int(time.time()) - 3600, body), body)  # too old: replay
