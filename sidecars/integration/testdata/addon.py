"""Fixture egress addon for the integration test: it marks every response it
proxied, so the test sees that mitmdump loaded the addon the entrypoint named
and that the request really went through egress.

mitmdump loads a script's module-level event hooks (mitmproxy 8.1.1, Debian's).
"""


def response(flow):
    flow.response.headers["x-sidecar-egress"] = "seen"
