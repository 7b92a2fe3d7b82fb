"""The Chalice app: handlers wired to chalicelib, no logic here."""

from chalice import Chalice

app = Chalice(app_name="logarchive")


@app.route("/health", methods=["GET"])
def health() -> dict:
    return {"status": "ok"}
