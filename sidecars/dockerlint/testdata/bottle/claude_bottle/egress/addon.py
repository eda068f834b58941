"""Stub egress addon: marks every response, so a test can see it ran."""

from mitmproxy import http


def response(flow: http.HTTPFlow) -> None:
    flow.response.headers["x-bottle-stub-addon"] = "1"
