"""The baseline of scripts/bench: a trivial Falcon ASGI responder."""

import falcon
import falcon.asgi


class Trivial:
    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = "1698915036"


app = falcon.asgi.App()
app.add_route("/api/beat", Trivial())
