"""Credential masking: the rules, and the configuration view every report is written from."""

from __future__ import annotations

import json

import pytest

from loadgen.options import build_config
from loadgen.errors import UsageError
from loadgen.redact import MASK, is_secret_header, redact_headers, redact_url
from loadgen.scraper import metrics_url, server_metrics_url
from loadgen.transport.base import split_host_port, url_credentials


@pytest.mark.parametrize(
    "name",
    ["Authorization", "proxy-authorization", "X-Api-Key", "X-Auth-Token", "Cookie", "Set-Cookie", "X-Client-Secret",
     "X-Password", "api_key", "x-amz-security-token", "X-Session-Id", "  AUTHORIZATION  "],
)  # fmt: skip
def test_secret_headers(name):
    assert is_secret_header(name)


@pytest.mark.parametrize("name", ["X-Trace", "Content-Type", "Host", "X-Loadgen-Check", "User-Agent", "Keep-Alive", "X-Request-Id"])
def test_plain_headers(name):
    assert not is_secret_header(name)


def test_redact_headers_keeps_names_and_order():
    headers = {"X-Trace": "7", "Authorization": "Bearer abc", "x-api-key": "k"}
    assert list(redact_headers(headers).items()) == [("X-Trace", "7"), ("Authorization", MASK), ("x-api-key", MASK)]
    assert headers["Authorization"] == "Bearer abc"  # a copy: the run still sends the real value


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("localhost:8000", "localhost:8000"),
        ("http://host:8002/metrics", "http://host:8002/metrics"),
        ("user:pw@host:8000", "***@host:8000"),
        ("https://user:p%40ss@host:8443", "https://***@host:8443"),
        ("https://TOKEN@host:8443/", "https://***@host:8443/"),
        ("http://u:pw@[::1]:8002/metrics?token=abc&x=1#top", "http://***@[::1]:8002/metrics?token=***&x=1#top"),
        ("host:8002/metrics?api_key=abc&access_token=def&page=2", "host:8002/metrics?api_key=***&access_token=***&page=2"),
        ("http://host/path/with@sign", "http://host/path/with@sign"),
        ("http://host:1/m?flag&Signature=abc", "http://host:1/m?flag&Signature=***"),
    ],
)
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_the_configuration_view_masks_credentials():
    config = build_config({
        "url": "http://user:S3CRET-1@triton:8000", "model-name": "m", "collect-metrics": True,
        "metrics-url": "https://u:S3CRET-2@triton:8002/metrics?token=S3CRET-3",
        "header": ["Authorization: Bearer S3CRET-4", "X-Api-Key: S3CRET-5", "X-Trace: visible"],
    })  # fmt: skip
    assert config.target.headers["Authorization"] == "Bearer S3CRET-4"  # what is sent is untouched
    view = config.to_dict()
    assert "S3CRET" not in json.dumps(view)
    assert view["headers"] == {"Authorization": MASK, "X-Api-Key": MASK, "X-Trace": "visible"}
    assert view["url"] == "http://***@triton:8000"


def test_errors_do_not_echo_credentials():
    with pytest.raises(UsageError) as caught:
        build_config({"header": ["Authorization Bearer S3CRET"]})
    assert "S3CRET" not in str(caught.value) and "'Authorization ...'" in str(caught.value)
    with pytest.raises(UsageError) as caught:
        split_host_port("http://user:S3CRET@host", 8000)  # no port
    assert "S3CRET" not in str(caught.value)
    with pytest.raises(UsageError) as caught:
        metrics_url("ftp://user:S3CRET@host/metrics")
    assert "S3CRET" not in str(caught.value)


def test_urls_with_credentials_still_work():
    assert split_host_port("http://user:pw@triton:8000", 8000) == ("triton", 8000)
    assert url_credentials("http://user:p%40ss@triton:8000") == "user:p@ss"
    assert url_credentials("triton:8000") is None
    assert server_metrics_url("https://user:pw@triton:8443") == "http://triton:8002/metrics"
