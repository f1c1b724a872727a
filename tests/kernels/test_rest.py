"""Kernel, session and kernelspec REST endpoints against a real server and real kernels."""

from __future__ import annotations

import os
import re
import uuid

import httpx

from tests.kernels.conftest import start_kernel
from tests.kernels.wsclient import KernelWS

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


# -- kernelspecs -----------------------------------------------------------------
def test_kernelspecs_list_and_get(http):
    r = http.get("/api/kernelspecs")
    assert r.status_code == 200
    body = r.json()
    assert body["default"] == "python3"
    spec = body["kernelspecs"]["python3"]
    assert spec["name"] == "python3"
    assert spec["spec"]["language"] == "python"
    assert "argv" in spec["spec"]
    assert spec["resources"]["logo-64x64"] == "/kernelspecs/python3/logo-64x64.png"
    one = http.get("/api/kernelspecs/python3")
    assert one.status_code == 200 and one.json()["spec"] == spec["spec"]
    assert http.get("/api/kernelspecs/no-such-kernel").status_code == 404


def test_kernelspec_resource_and_traversal(http):
    r = http.get("/kernelspecs/python3/logo-64x64.png")
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/png"
    assert r.content.startswith(b"\x89PNG")
    for bad in (
        "/kernelspecs/python3/..%2Fkernel.json%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "/kernelspecs/python3/%2E%2E/%2E%2E/%2E%2E/%2E%2E/%2E%2E/etc/passwd",
        "/kernelspecs/python3/..%2F..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "/kernelspecs/python3/%2Fetc%2Fpasswd",
        "/kernelspecs/python3/nope.png",
        "/kernelspecs/..%2F..%2F/kernel.json",
    ):
        resp = http.get(bad)
        assert resp.status_code == 404, bad
        assert b"root:" not in resp.content
    with httpx.Client(base_url=http.base_url) as anon:
        # Anonymous: refused (pages may redirect to the login form instead).
        assert anon.get("/kernelspecs/python3/logo-64x64.png").status_code in (302, 401, 403)


def test_custom_kernelspec_resources_stay_inside(http):
    spec = http.get("/api/kernelspecs/zasper-test").json()
    assert spec["spec"]["interrupt_mode"] == "message"
    assert spec["resources"]["kernel.js"] == "/kernelspecs/zasper-test/kernel.js"
    assert http.get("/kernelspecs/zasper-test/kernel.js").text == "// test resource\n"
    # A symlink inside the kernelspec pointing outside it is not served.
    r = http.get("/kernelspecs/zasper-test/escape.txt")
    assert r.status_code == 404
    assert b"secret" not in r.content
    assert http.get("/kernelspecs/zasper-test/..%2F..%2Foutside-secret.txt").status_code == 404


# -- kernels ----------------------------------------------------------------------
def test_kernel_lifecycle_endpoints(http):
    r = http.post("/api/kernels", json={"name": "python3"})
    assert r.status_code == 201
    model = r.json()
    kid = model["id"]
    assert r.headers["location"] == f"/api/kernels/{kid}"
    assert set(model) >= {"id", "name", "last_activity", "execution_state", "connections"}
    assert model["name"] == "python3"
    assert TIMESTAMP.match(model["last_activity"])
    assert isinstance(model["connections"], int)
    assert kid in [k["id"] for k in http.get("/api/kernels").json()]
    assert http.get(f"/api/kernels/{kid}").json()["id"] == kid
    # Jupyter clients POST these with {} (GatewayClient) or no body.
    assert http.post(f"/api/kernels/{kid}/interrupt", json={}).status_code == 204
    restarted = http.post(f"/api/kernels/{kid}/restart", content=b"")
    assert restarted.status_code == 200
    assert restarted.json()["id"] == kid
    assert http.get(f"/api/kernels/{kid}").json()["execution_state"] in ("idle", "starting", "busy")
    assert http.delete(f"/api/kernels/{kid}").status_code == 204
    assert http.get(f"/api/kernels/{kid}").status_code == 404
    assert http.delete(f"/api/kernels/{kid}").status_code == 404
    assert http.post(f"/api/kernels/{kid}/interrupt").status_code == 404
    assert http.post(f"/api/kernels/{kid}/restart").status_code == 404


def test_kernel_bad_requests(http):
    assert http.post("/api/kernels", json={"name": "no-such-kernel"}).status_code == 404
    r = http.post("/api/kernels", content=b"{nope", headers={"Content-Type": "text/plain;charset=UTF-8"})
    assert r.status_code == 400
    assert "JSON" in r.json()["message"]
    assert http.post("/api/kernels", json={"name": 5}).status_code == 400
    assert http.get(f"/api/kernels/{uuid.uuid4()}").status_code == 404
    with httpx.Client(base_url=http.base_url) as anon:
        assert anon.get("/api/kernels").status_code in (401, 403)
        assert anon.post("/api/kernels", json={}).status_code in (401, 403)


def test_kernel_that_cannot_launch_is_a_clear_500(kserver, http):
    before = set(kserver.runtime_dir.iterdir())
    r = http.post("/api/kernels", json={"name": "zasper-broken"})
    assert r.status_code == 500
    assert "failed to start" in r.json()["message"]
    r = http.post("/api/sessions", json={"path": "broken.ipynb", "type": "notebook", "kernel": {"name": "zasper-broken"}})
    assert r.status_code == 500
    assert "failed to start" in r.json()["message"]
    assert set(kserver.runtime_dir.iterdir()) == before  # no connection file left behind
    assert not [k for k in http.get("/api/kernels").json() if k["name"] == "zasper-broken"]
    assert not [s for s in http.get("/api/sessions").json() if s["path"] == "broken.ipynb"]


def test_post_kernel_accepts_gateway_env_and_text_plain(http):
    r = http.post(
        "/api/kernels",
        content=b'{"name": "python3", "env": {"KERNEL_USERNAME": "ann", "OTHER": "x"}}',
        headers={"Content-Type": "text/plain;charset=UTF-8"},
    )
    assert r.status_code == 201
    http.delete(f"/api/kernels/{r.json()['id']}")


# -- sessions ---------------------------------------------------------------------
async def test_sessions_crud(kserver, http):
    (kserver.root_dir / "sub").mkdir(exist_ok=True)
    r = http.post("/api/sessions", json={"path": "sub/a.ipynb", "type": "notebook", "name": "", "kernel": {"name": "python3"}})
    assert r.status_code == 201, r.text
    session = r.json()
    sid = session["id"]
    assert r.headers["location"] == f"/api/sessions/{sid}"
    assert session["path"] == "sub/a.ipynb"
    assert session["type"] == "notebook"
    assert session["notebook"] == {"path": "sub/a.ipynb", "name": session["name"]}
    kid = session["kernel"]["id"]
    assert TIMESTAMP.match(session["kernel"]["last_activity"])

    # The kernel runs in the notebook's directory.
    client = await KernelWS.connect(kserver, kid, "v1")
    try:
        out = await client.execute("import os; os.getcwd()")
        assert os.path.realpath(eval(out["result"]["text/plain"])) == os.path.realpath(kserver.root_dir / "sub")
    finally:
        await client.close()

    # Same path again: the existing session, not a second kernel.
    again = http.post("/api/sessions", json={"path": "sub/a.ipynb", "type": "notebook"})
    assert again.status_code == 201 and again.json()["id"] == sid
    assert http.get(f"/api/sessions/{sid}").json()["kernel"]["id"] == kid
    assert sid in [s["id"] for s in http.get("/api/sessions").json()]

    # Rename the path.
    renamed = http.patch(f"/api/sessions/{sid}", json={"path": "sub/b.ipynb", "name": "b.ipynb"})
    assert renamed.status_code == 200
    assert renamed.json()["path"] == "sub/b.ipynb" and renamed.json()["kernel"]["id"] == kid

    # Switch to a new kernel by name: the old one is shut down.
    switched = http.patch(f"/api/sessions/{sid}", json={"kernel": {"name": "python3"}})
    assert switched.status_code == 200
    new_kid = switched.json()["kernel"]["id"]
    assert new_kid != kid
    assert http.get(f"/api/kernels/{kid}").status_code == 404

    # Switch to an existing kernel by id.
    other = start_kernel(http)
    by_id = http.patch(f"/api/sessions/{sid}", json={"kernel": {"id": other}})
    assert by_id.status_code == 200 and by_id.json()["kernel"]["id"] == other
    assert http.get(f"/api/kernels/{new_kid}").status_code == 404
    assert http.patch(f"/api/sessions/{sid}", json={"kernel": {"id": str(uuid.uuid4())}}).status_code == 400
    assert http.patch(f"/api/sessions/{sid}", json={"kernel": {"name": "no-such-kernel"}}).status_code == 400
    assert http.patch(f"/api/sessions/{sid}", content=b"").status_code == 400

    assert http.delete(f"/api/sessions/{sid}").status_code == 204
    assert http.get(f"/api/kernels/{other}").status_code == 404
    assert http.get(f"/api/sessions/{sid}").status_code == 404
    assert http.delete(f"/api/sessions/{sid}").status_code == 404
    assert http.patch(f"/api/sessions/{sid}", json={"path": "x"}).status_code == 404


def test_session_bad_requests(http):
    assert http.post("/api/sessions", json={"type": "notebook"}).status_code == 400
    assert http.post("/api/sessions", json={"path": "x.ipynb"}).status_code == 400
    assert http.post("/api/sessions", content=b"[1]").status_code == 400
    r = http.post("/api/sessions", json={"path": "y.ipynb", "type": "notebook", "kernel": {"name": "no-such-kernel"}})
    assert r.status_code == 501
    assert "not available" in r.json()["message"]
    r = http.post("/api/sessions", json={"path": "z.ipynb", "type": "notebook", "kernel": {"id": str(uuid.uuid4())}})
    assert r.status_code == 404
    assert not [s for s in http.get("/api/sessions").json() if s["path"] in ("y.ipynb", "z.ipynb")]


def test_session_with_existing_kernel_and_console_type(http):
    kid = start_kernel(http)
    r = http.post("/api/sessions", json={"path": "console-1", "type": "console", "kernel": {"id": kid}})
    assert r.status_code == 201
    model = r.json()
    assert model["kernel"]["id"] == kid
    assert "notebook" not in model
    # Deleting the kernel directly removes its session from listings.
    assert http.delete(f"/api/kernels/{kid}").status_code == 204
    assert model["id"] not in [s["id"] for s in http.get("/api/sessions").json()]
    assert http.get(f"/api/sessions/{model['id']}").status_code == 404


def test_status_counts_kernels(http):
    kid = start_kernel(http)
    try:
        status = http.get("/api/status").json()
        assert status["kernels"] >= 1
        assert isinstance(status["connections"], int)
    finally:
        http.delete(f"/api/kernels/{kid}")
