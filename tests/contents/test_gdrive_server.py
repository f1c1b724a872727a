"""Through the real server: `zasperhub --contents gdrive://<folder>` against the Drive double."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx

from tests.contents.gdrive_fixture import drive_double  # noqa: F401  (fixture)
from tests.support.drive_double import DriveDouble


def test_rest_api_on_drive_with_outage(drive_double: DriveDouble, start_server: Callable, tmp_path: Path) -> None:
    client = drive_double.add_client()
    folder = drive_double.folder("rest")
    # Secrets travel in the environment; only the (test-only) endpoint is a flag.
    env = {"ZASPERHUB_GDRIVE_REFRESH_TOKEN": client["refresh_token"], "ZASPERHUB_GDRIVE_CLIENT_ID": client["client_id"],
           "ZASPERHUB_GDRIVE_CLIENT_SECRET": client["client_secret"], "ZASPERHUB_GDRIVE_TOKEN_URI": drive_double.token_uri}
    server = start_server(None, f"--contents=gdrive://{folder}", f"--DriveBackend.root_url={drive_double.url}",
                          "--DriveBackend.retry_backoff=0.01", "--DriveBackend.max_retries=2", env=env)
    assert client["client_secret"] not in " ".join(server.command())
    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": "# on Drive"}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=30) as http:
        assert http.put("/api/contents/work", json={"type": "directory"}).status_code == 201
        r = http.put("/api/contents/work/nb.ipynb", json={"type": "notebook", "content": nb})
        assert r.status_code == 201, r.text
        work = drive_double.find(folder, "work")
        assert work is not None and work["mimeType"] == "application/vnd.google-apps.folder"
        assert drive_double.find(work["id"], "nb.ipynb") is not None
        assert http.get("/api/contents/work/nb.ipynb").json()["content"]["cells"][0]["source"] == "# on Drive"

        # Drive goes down: a clear 503 with the reason, and the saved notebook is intact.
        drive_double.fail_next(10_000, 503)
        try:
            nb2 = dict(nb, cells=[])
            down = http.put("/api/contents/work/nb.ipynb", json={"type": "notebook", "content": nb2})
            assert down.status_code == 503, down.text
            assert "Google Drive" in down.json()["message"] and "503" in down.json()["message"]
        finally:
            drive_double.clear_faults()
        assert len(http.get("/api/contents/work/nb.ipynb").json()["content"]["cells"]) == 1
        assert http.put("/api/contents/work/nb.ipynb", json={"type": "notebook", "content": nb2}).status_code == 200
        assert http.get("/api/contents/work/nb.ipynb").json()["content"]["cells"] == []

        # A rename through the API is a Drive rename: same id, new name.
        file_id = drive_double.find(work["id"], "nb.ipynb")["id"]
        assert http.patch("/api/contents/work/nb.ipynb", json={"path": "work/renamed.ipynb"}).status_code == 200
        assert drive_double.files[file_id]["name"] == "renamed.ipynb"
        names = [e["name"] for e in http.get("/api/contents/work").json()["content"]]
        assert "renamed.ipynb" in names and "nb.ipynb" not in names
