"""The baseline of the gateway benchmark: an ASGI app that answers every request with the
same JavaScript body the gateway sends, doing nothing else."""

HEADERS = [(b"content-type", b"application/javascript; charset=utf-8"),
           (b"content-length", b"1")]


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": b";"})
