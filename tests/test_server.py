"""The HTTP API, with FastAPI's TestClient: every endpoint and every error path, the limits, the
API key, and batching of requests that arrive together."""
from __future__ import annotations

import asyncio
import base64
import io
import struct
import zlib

import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi", reason="install the test extra: pip install -e '.[test]'")
from fastapi.testclient import TestClient  # noqa: E402

from grounding.interfaces.server.app import Models, ServerSettings, create_app  # noqa: E402
from grounding.saved import load  # noqa: E402


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _client(server_world, **changes) -> TestClient:
    settings = ServerSettings(model=str(server_world / "model"), index=str(server_world / "store"),
                              vqa_model=str(server_world / "vqa"), caption_model=str(server_world / "caption"),
                              detect_model=str(server_world / "detect"), device="cpu", **changes)
    return TestClient(create_app(settings))


@pytest.fixture(scope="module")
def client(server_world):
    with _client(server_world) as c:
        yield c


@pytest.fixture(scope="module")
def scene(server_world) -> bytes:
    return (server_world / "scenes" / "scene0.png").read_bytes()


def test_health_info_page_and_docs(client):
    assert client.get("/health").json() == {"status": "ok"}
    info = client.get("/info").json()
    assert info["index"]["count"] == 8 and info["vqa"] and info["caption"] and info["precision"] == "fp32"
    page = client.get("/")
    assert page.status_code == 200 and "<title>grounding</title>" in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # nothing fetched from elsewhere
    assert client.get("/static/app.js").status_code == 200
    schema = client.get("/openapi.json").json()
    assert {"/classify", "/search", "/ground", "/vqa", "/caption", "/health", "/info"} <= set(schema["paths"])
    assert client.get("/docs").status_code == 200


def test_classify_gives_the_models_own_probabilities(client, server_world, scene):
    from grounding.inference.templates import TEMPLATE_SETS
    from grounding.inference.encode import classify, text_classifier

    answer = client.post("/classify", files=[("images", ("a.png", scene, "image/png")),
                                             ("images", ("b.png", scene, "image/png"))],
                         data={"labels": "red circle, blue square\ngreen triangle", "top_k": 2})
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["filename"] for r in results] == ["a.png", "b.png"] and all(len(r["top"]) == 2 for r in results)
    model = load(server_world / "model")
    labels = ["red circle", "blue square", "green triangle"]
    with torch.no_grad():
        probs = classify(model, text_classifier(model, labels, TEMPLATE_SETS["default"]),
                         model.preprocess(Image.open(io.BytesIO(scene)))[None])[0]
    best = int(probs.argmax())
    assert results[0]["top"][0]["label"] == labels[best]
    assert results[0]["top"][0]["probability"] == pytest.approx(float(probs[best]), abs=1e-5)


def _bomb_png() -> bytes:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("files,data,code,words", [
    ([("images", ("a.png", b"<html>not an image</html>", "image/png"))], {"labels": "a,b"}, 400, "not an image"),
    ([("images", ("a.txt", b"hello", "text/plain"))], {"labels": "a,b"}, 400, "not as an image"),
    ([("images", ("cut.png", "TRUNCATED", "image/png"))], {"labels": "a,b"}, 400, "truncated or corrupt"),
    ([("images", ("bomb.png", "BOMB", "image/png"))], {"labels": "a,b"}, 413, "over the server's limit"),
    ([("images", ("big.png", "BIG", "image/png"))], {"labels": "a,b"}, 413, "upload limit"),
    ([("images", ("a.png", "SCENE", "image/png"))], {"labels": " , "}, 400, "no labels"),
    ([("images", ("a.png", "SCENE", "image/png"))], {"labels": "a", "templates": "/etc/passwd"}, 400,
     "unknown template set"),
    ([], {"labels": "a,b"}, 422, "images"),
])
def test_classify_refuses_bad_requests_with_a_plain_reason(server_world, scene, files, data, code, words):
    payloads = {"TRUNCATED": scene[:len(scene) // 2], "BOMB": _bomb_png(), "SCENE": scene, "BIG": b"\0" * 3000}
    files = [(field, (name, payloads.get(body, body), kind)) for field, (name, body, kind) in files]
    with _client(server_world, max_upload_mb=2000 / 2 ** 20 if any(f[1][0] == "big.png" for f in files) else 10) as c:
        answer = c.post("/classify", files=files or None, data=data)
    assert answer.status_code == code, answer.text
    detail = answer.json()["detail"]
    assert words in (detail if isinstance(detail, str) else str(detail)) and "Traceback" not in answer.text


def test_search_by_words_and_by_image_and_thumbnails_by_row(client, scene):
    found = client.get("/search", params={"q": "a red circle", "k": 3}).json()
    assert len(found["hits"]) == 3 and found["hits"][0]["score"] >= found["hits"][1]["score"]
    thumb = client.get(found["hits"][0]["thumbnail"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.content)).size[0] <= 160
    by_image = client.post("/search", files={"image": ("q.png", scene, "image/png")}, data={"k": 1}).json()
    assert by_image["hits"][0]["name"] == "scene0.png" and by_image["hits"][0]["score"] == pytest.approx(1, abs=1e-4)
    assert client.get("/thumbnail/8").status_code == 404
    assert client.get("/thumbnail/-1").status_code == 404
    for sneaky in ("/thumbnail/..%2F..%2Fetc%2Fpasswd", "/thumbnail/%2Fetc%2Fpasswd"):
        assert client.get(sneaky).status_code in (404, 422)  # a row number or nothing: never a path
    assert client.get("/search", params={"q": ""}).status_code == 422


def test_ground_gives_the_models_box_and_a_heat_map(client, server_world, scene):
    from grounding.tasks.phrase_grounding.locate import ground

    answer = client.post("/ground", files={"image": ("s.png", scene, "image/png")}, data={"phrase": "the circle"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    _, box, view = ground(load(server_world / "model"), Image.open(io.BytesIO(scene)), "the circle")
    assert body["box"] == list(box) and body["view_size"] == view.size[0]
    png = base64.b64decode(body["heatmap"].split(",", 1)[1])
    assert Image.open(io.BytesIO(png)).size == (body["view_size"], body["view_size"])


def test_vqa_and_caption_give_the_models_own_answers(client, server_world, scene):
    """The server's answers are what the saved models give for the same image and question."""
    from grounding.tasks.captioning.decode import generate
    from grounding.tasks.saved import load_task_model

    question = "how many circles are there?"
    answer = client.post("/vqa", files={"image": ("s.png", scene, "image/png")},
                         data={"question": question, "top": 2}).json()
    vqa = load_task_model(server_world / "vqa", "vqa")
    image = Image.open(io.BytesIO(scene)).convert("RGB")
    with torch.no_grad():
        probs = vqa(vqa.preprocess(image)[None], vqa.tokenizer([question], truncate=True)).softmax(-1)[0]
    values, indices = probs.topk(2)
    assert [a["answer"] for a in answer["answers"]] == [vqa.config.answers[int(i)] for i in indices]
    assert [a["probability"] for a in answer["answers"]] == pytest.approx(values.tolist(), abs=1e-6)
    caption = client.post("/caption", files={"image": ("s.png", scene, "image/png")}).json()["caption"]
    captioner = load_task_model(server_world / "caption", "caption")
    with torch.no_grad():
        assert caption == generate(captioner, captioner.preprocess(image)[None])[0]


def test_what_a_server_was_not_given_is_a_404_saying_how(server_world, scene):
    with TestClient(create_app(ServerSettings(model=str(server_world / "model"), device="cpu"))) as c:
        for path, words in (("/vqa", "--vqa-model"), ("/caption", "--caption-model")):
            answer = c.post(path, files={"image": ("s.png", scene, "image/png")}, data={"question": "what?"})
            assert answer.status_code == 404 and words in answer.json()["detail"]
        assert c.get("/search", params={"q": "red"}).status_code == 404


def test_an_api_key_guards_everything_but_health(server_world):
    with _client(server_world, api_key="s3cret") as c:
        assert c.get("/health").status_code == 200
        assert c.get("/info").status_code == 401 and "X-API-Key" in c.get("/info").json()["detail"]
        assert c.get("/info", headers={"X-API-Key": "wrong"}).status_code == 401
        assert c.get("/info", headers={"X-API-Key": "s3cret"}).status_code == 200
        assert c.get("/search", params={"q": "red"}).status_code == 401


def test_no_cross_origin_access_by_default(client):
    answer = client.get("/info", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in answer.headers


def test_requests_that_arrive_together_share_forward_passes(server_world, scene):
    import httpx

    app = create_app(ServerSettings(model=str(server_world / "model"), device="cpu", max_wait_ms=50))
    models: Models = app.state.models

    async def many() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            answers = await asyncio.gather(*[
                c.post("/classify", files={"images": (f"{i}.png", scene, "image/png")}, data={"labels": "a,b"})
                for i in range(12)])
        return [a.status_code for a in answers]

    assert asyncio.run(many()) == [200] * 12
    assert models.images.batches < 12  # batched: fewer forward passes than requests


def _gate(app, headers: dict[str, str]) -> tuple[int, bool]:
    """A raw POST through the app: its status, and whether any of its body was asked for."""
    asked, sent = [], []

    async def receive():
        asked.append(True)
        return {"type": "http.request", "body": b"x" * 100, "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/classify", "raw_path": b"/classify", "query_string": b"",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()], "http_version": "1.1",
             "scheme": "http", "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 1), "root_path": ""}
    asyncio.run(app(scope, receive, send))
    return next(m["status"] for m in sent if m["type"] == "http.response.start"), bool(asked)


def test_a_request_is_refused_before_its_body_is_read(server_world):
    """Without the key, without a length, or with a length over the limit: answered at once, the
    body never read (a 1 GB upload to a server of 1 MB uploads is not spooled to disk first)."""
    app = create_app(ServerSettings(model=str(server_world / "model"), device="cpu", api_key="s3cret",
                                    max_upload_mb=1, max_images=2))
    assert _gate(app, {"content-length": "100"}) == (401, False)
    assert _gate(app, {"content-length": "100", "x-api-key": "wrong"}) == (401, False)
    assert _gate(app, {"x-api-key": "s3cret"}) == (411, False)
    assert _gate(app, {"content-length": str(10 ** 9), "x-api-key": "s3cret"}) == (413, False)
    status, asked = _gate(app, {"content-length": "100", "x-api-key": "s3cret",
                                "content-type": "multipart/form-data; boundary=b"})
    assert asked and status in (400, 422)  # within the limits the body is read (this one is no valid form)


def test_a_request_of_more_images_than_the_limit_is_refused(server_world, scene):
    with _client(server_world, max_images=2) as c:
        files = [("images", (f"{i}.png", scene, "image/png")) for i in range(3)]
        answer = c.post("/classify", files=files, data={"labels": "a,b"})
        assert answer.status_code == 413 and "over the server's limit of 2" in answer.json()["detail"]
        assert c.post("/classify", files=files[:2], data={"labels": "a,b"}).status_code == 200


def test_a_file_name_that_is_not_utf8_is_answered_not_a_500(server_world, tmp_path):
    import os

    from grounding.saved import load
    from grounding.tasks.retrieval.embed import embed_images
    from grounding.tasks.retrieval.index import build_index

    folder = tmp_path / "scenes"
    folder.mkdir()
    os.link(server_world / "scenes" / "scene0.png", os.fsencode(folder) + b"/caf\xe9.png")
    embed_images(load(server_world / "model"), str(folder), tmp_path / "store", str(server_world / "model"),
                 workers=0, show_progress=False)
    build_index(tmp_path / "store")
    with TestClient(create_app(ServerSettings(model=str(server_world / "model"), index=str(tmp_path / "store"),
                                              device="cpu"))) as c:
        answer = c.get("/search", params={"q": "a red circle"})
        assert answer.status_code == 200 and answer.json()["hits"][0]["name"] == "caf\ufffd.png"
        assert c.get("/thumbnail/0").status_code == 200


def test_a_key_that_is_not_ascii_is_refused_not_a_500(server_world):
    with _client(server_world, api_key="s3cret") as c:
        assert c.get("/info", headers={"X-API-Key": b"caf\xe9"}).status_code == 401
        assert c.post("/classify", headers={"X-API-Key": b"caf\xe9"}, data={"labels": "a"}).status_code == 401


def test_the_pixels_held_at_once_never_pass_the_budget_and_every_holder_gets_its_turn():
    from grounding.interfaces.server.app import PixelBudget

    budget, held, most = PixelBudget(100), [0], [0]

    async def hold(count: int) -> None:
        async with budget.pixels(count):
            held[0] += min(count, 100)
            most[0] = max(most[0], held[0])
            await asyncio.sleep(0.001)
            held[0] -= min(count, 100)

    async def many() -> None:
        await asyncio.gather(*[hold(count) for count in [60, 30, 50, 250, 10, 100, 40] * 5])

    asyncio.run(many())
    assert most[0] == 100 and held[0] == 0 and budget.held == 0  # full at times, never over; an image over it ran alone


def test_requests_of_images_over_the_pixel_budget_wait_their_turn_and_all_answer(server_world, scene):
    """A budget of one image's pixels: twelve requests of three images each are answered one image
    at a time, each with the probabilities it gets alone."""
    import httpx

    alone = _client(server_world).post("/classify", files={"images": ("s.png", scene, "image/png")},
                                       data={"labels": "a,b"}).json()["results"][0]["top"]
    width, height = Image.open(io.BytesIO(scene)).size
    app = create_app(ServerSettings(model=str(server_world / "model"), device="cpu", max_held_pixels=width * height))

    async def many() -> list:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            return await asyncio.gather(*[
                c.post("/classify", files=[("images", (f"{i}.png", scene, "image/png")) for i in range(3)],
                       data={"labels": "a,b"}) for _ in range(12)])

    answers = asyncio.run(many())
    assert [a.status_code for a in answers] == [200] * 12
    for answer in answers:
        for result in answer.json()["results"]:
            assert [t["label"] for t in result["top"]] == [t["label"] for t in alone]
            assert all(abs(t["probability"] - u["probability"]) < 1e-5 for t, u in zip(result["top"], alone))


def test_detect_gives_the_detectors_own_boxes_in_the_images_pixels_and_a_drawing(client, server_world, scene):
    from grounding.tasks.detection.evaluate import ask, detect_pixels, in_image
    from grounding.tasks.saved import load_task_model

    answer = client.post("/detect", files={"image": ("s.png", scene, "image/png")},
                         data={"queries": "red circle, blue square", "threshold": "0"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    detector = load_task_model(server_world / "detect", "detect")
    picture = Image.open(io.BytesIO(scene)).convert("RGB")
    asked = ask(detector, ["red circle", "blue square"])
    own = detect_pixels(detector, detector.preprocess(picture)[None], asked, 0.0)[0]
    assert [d["query"] for d in body["detections"]] == [d.query for d in own]
    assert all(abs(a["score"] - d.score) < 1e-5 for a, d in zip(body["detections"], own))
    first = in_image(own[0].box, picture.size, detector.config.towers.vision.resize)
    assert body["detections"][0]["box"] == pytest.approx(first, abs=0.06)
    drawn = Image.open(io.BytesIO(base64.b64decode(body["image"].split(",", 1)[1])))
    assert drawn.size == picture.size
    empty = client.post("/detect", files={"image": ("s.png", scene, "image/png")}, data={"queries": " , "})
    assert empty.status_code == 400 and "no queries" in empty.json()["detail"]


def test_a_server_without_a_detector_says_how_to_get_one(server_world, scene):
    with TestClient(create_app(ServerSettings(model=str(server_world / "model"), device="cpu"))) as bare:
        answer = bare.post("/detect", files={"image": ("s.png", scene, "image/png")}, data={"queries": "a"})
        assert answer.status_code == 404 and "--detect-model" in answer.json()["detail"]
        assert bare.get("/info").json()["detect"] is False
