"""The local cloud's AWS endpoint keeps its connections (provisioner/localcloud/endpoint.py)."""

from __future__ import annotations

import http.client
import socket
from typing import Any

import boto3
import pytest

from provisioner.localcloud.endpoint import Endpoint

BUCKET = "endpoint-test"


@pytest.fixture
def endpoint(aws_endpoint: Endpoint) -> Endpoint:
    return aws_endpoint


def _s3(endpoint: Endpoint) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{endpoint.port}",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _ask(conn: http.client.HTTPConnection, method: str, path: str, body: bytes = b"") -> bytes:
    conn.request(method, path, body=body or None)
    response = conn.getresponse()
    assert response.getheader("Connection") != "close"
    return response.read()


def test_requests_share_one_connection_even_when_the_app_leaves_a_body_unread(
    endpoint: Endpoint,
) -> None:
    _s3(endpoint).create_bucket(Bucket=BUCKET)
    conn = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=10)
    _ask(conn, "GET", f"/{BUCKET}")
    first = conn.sock
    assert first is not None
    # moto's bucket listing reads no request body: the bytes sent with it must not be taken
    # for the next request's first line.
    _ask(conn, "GET", f"/{BUCKET}", body=b"GET /not-a-request HTTP/1.1\r\n\r\n")
    listing = _ask(conn, "GET", f"/{BUCKET}")
    assert conn.sock is first
    assert b"ListBucketResult" in listing


def test_a_chunked_request_is_answered_and_its_connection_closed(endpoint: Endpoint) -> None:
    _s3(endpoint).create_bucket(Bucket=BUCKET)
    with socket.create_connection(("127.0.0.1", endpoint.port), timeout=10) as sock:
        sock.sendall(
            f"GET /{BUCKET} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
            "0\r\n\r\n".encode()
        )
        answer = b""
        while chunk := sock.recv(65536):  # ends: the server closes
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200")
    assert b"Connection: close" in answer


def test_boto3_round_trips_objects_over_kept_connections(endpoint: Endpoint) -> None:
    s3 = _s3(endpoint)
    s3.create_bucket(Bucket=BUCKET)
    bodies = {f"k{i}": bytes([i]) * (700_000 if i % 3 == 0 else 100) for i in range(9)}
    for key, body in bodies.items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        s3.head_object(Bucket=BUCKET, Key=key)
    for key, body in bodies.items():
        assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == body
