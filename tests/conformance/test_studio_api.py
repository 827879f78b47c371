"""kiln studio through its REST API alone (docs/api.md), on loopback:

- first run: /api/health says setup is needed; POST /api/setup creates the
  administrator once (a second setup is refused);
- login sets an HttpOnly, SameSite=Strict session cookie; state-changing
  requests with the cookie need the session's X-CSRF-Token (403 without or
  with a wrong one); API tokens (Bearer) need none;
- a classification project: a zip of class folders (with one mislabelled
  image), a raw image, a multipart upload of two images, a file that is not
  data (reported as a problem), and a resumable upload in two chunks (HEAD
  gives the offset, a wrong offset is refused); listing with label / split /
  problem filters and paging; the mislabelled image's label is fixed;
  dataset health;
- a detection project: a COCO zip (one box clamped: found by the problem
  filter), boxes edited and validated through the annotation endpoint;
- an evaluate job of the int8 model on the same images gives the training
  report's accuracy;
- a train job (Fast preset) followed over Server-Sent Events to progress
  1.0 and state done; the model version has the four artifacts, the
  dataset version and the evaluation; the int8 model downloaded (its
  SHA-256 is the artifact's) classifies a red picture as red in
  `kiln classify`;
- access control over the whole route table (`kiln studio --routes`, which
  must equal docs/openapi.json's paths): user B gets 404 for every endpoint
  naming A's project, image, upload, job, model or token, 403 for the
  administrators' endpoints; unauthenticated requests get 401; A's data is
  unchanged afterwards; an invited member sees the project but cannot
  delete it;
- a running job is canceled;
- SIGTERM in the middle of a training job: the job checkpoints, goes back
  to the queue and finishes after the restart;
- kill -9 of the studio in the middle of a training job and right after an
  acknowledged upload: after a restart the image is listed and its bytes
  hash to the acknowledged hash, and the job is leased again when its
  lease runs out and finishes, resumed from the trainer's checkpoint.
"""
import hashlib
import http.client
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile

from common import kiln_bin

passed, failures = 0, []
HERE = os.path.dirname(os.path.abspath(__file__))
COLOURS = {"red": (190, 50, 40), "green": (40, 170, 70), "blue": (40, 70, 190)}


def check(cond, what):
    global passed
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if cond:
        passed += 1
    else:
        failures.append(what)


def png_bytes(colour, seed, size=64):
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    f = rng.uniform(0.05, 0.3)
    stripes = 40 * np.sin(f * (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1)))
    img = np.array(colour, np.float32)[None, None, :] + stripes[..., None]
    img += rng.normal(0, 10, (size, size, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


class Studio:
    def __init__(self, data, lease=4):
        self.data = data
        self.proc = subprocess.Popen([kiln_bin(), "studio", "--port", "0", "--data", data,
                                      "--workers", "1", "--train-threads", "2",
                                      "--lease-seconds", str(lease)],
                                     stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
        line = self.proc.stdout.readline()
        m = re.search(r"http://([\d.]+):(\d+)/", line)
        if not m:
            raise RuntimeError("kiln studio did not print its URL: %r" % line)
        self.host, self.port = m.group(1), int(m.group(2))

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=120)


class Client:
    """One user: a session cookie and CSRF token, or a Bearer token."""

    def __init__(self, studio):
        self.studio = studio
        self.cookie = None
        self.csrf = None
        self.token = None

    def request(self, method, path, body=None, headers=None, csrf=True, raw=False):
        h = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        if self.token:
            h["Authorization"] = "Bearer " + self.token
        elif self.cookie:
            h["Cookie"] = "kiln_session=" + self.cookie
            if csrf and self.csrf and method not in ("GET", "HEAD"):
                h["X-CSRF-Token"] = self.csrf
        conn = http.client.HTTPConnection(self.studio.host, self.studio.port, timeout=300)
        conn.request(method, path, body=body, headers=h)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        for k, v in resp.getheaders():
            if k.lower() == "set-cookie" and v.startswith("kiln_session="):
                self.cookie = v.split(";")[0].split("=", 1)[1] or None
                self.set_cookie_header = v
        if raw:
            return resp.status, data, resp
        try:
            return resp.status, json.loads(data) if data else None
        except ValueError:
            return resp.status, data

    def login(self, name, password):
        status, body = self.request("POST", "/api/login", {"name": name, "password": password})
        if status == 200:
            self.csrf = body["csrf_token"]
        return status, body


def multipart(files):
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for name, data in files:
        out.write(("--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"%s\"\r\n"
                   "Content-Type: application/octet-stream\r\n\r\n" % (boundary, name)).encode())
        out.write(data + b"\r\n")
    out.write(("--%s--\r\n" % boundary).encode())
    return out.getvalue(), "multipart/form-data; boundary=" + boundary


def make_zip():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        seed = 0
        for name, colour in COLOURS.items():
            for i in range(12):
                seed += 1
                z.writestr("colours/%s/%02d.png" % (name, i), png_bytes(colour, seed))
        # a red picture filed under blue: fixed through the API below
        z.writestr("colours/blue/wrong.png", png_bytes(COLOURS["red"], 999))
    return buf.getvalue()


def make_coco_zip():
    """Four grey pictures with boxes in COCO form; one box runs off its image."""
    coco = {"images": [], "annotations": [],
            "categories": [{"id": 1, "name": "cup"}, {"id": 2, "name": "plate"}]}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i in range(4):
            z.writestr("det/img%d.png" % i, png_bytes((100, 100, 100), 50 + i, size=80))
            coco["images"].append({"id": i + 1, "file_name": "img%d.png" % i, "width": 80, "height": 80})
            coco["annotations"].append({"id": i + 1, "image_id": i + 1, "category_id": 1 + i % 2,
                                        "bbox": [10, 10, 30, 30], "iscrowd": 0, "area": 900})
        coco["annotations"].append({"id": 9, "image_id": 1, "category_id": 2, "bbox": [60, 60, 40, 40],
                                    "iscrowd": 0, "area": 1600})
        z.writestr("det/annotations.json", json.dumps(coco))
    return buf.getvalue()


def follow_events(client, job_id, until=None):
    """Reads the job's event stream until its end event (or until(event))."""
    conn = http.client.HTTPConnection(client.studio.host, client.studio.port, timeout=600)
    conn.request("GET", "/api/jobs/%d/events" % job_id,
                 headers={"Cookie": "kiln_session=" + client.cookie})
    resp = conn.getresponse()
    ctype = resp.getheader("Content-Type")
    events, end, event, data = [], None, None, []
    while True:
        line = resp.fp.readline()
        if not line:
            break
        line = line.decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])
        elif line == "":
            if event == "progress":
                events.append(json.loads("\n".join(data)))
                if until and until(events[-1]):
                    break
            elif event == "end":
                end = json.loads("\n".join(data))
                break
            event, data = None, []
    conn.close()
    return ctype, events, end


def wait_job(client, job_id, states, timeout=300):
    t = time.time()
    while time.time() - t < timeout:
        _, job = client.request("GET", "/api/jobs/%d" % job_id)
        if job["state"] in states:
            return job
        time.sleep(0.2)
    return job


def route_table():
    out = subprocess.run([kiln_bin(), "studio", "--routes"], capture_output=True, text=True, check=True)
    return [tuple(l.split(" ", 1)) for l in out.stdout.splitlines()]


def main():
    tmp = tempfile.mkdtemp(prefix="kiln-studio-test-")
    data = os.path.join(tmp, "data")
    studio = Studio(data)
    try:
        run(studio, tmp, data)
    finally:
        if studio.proc.poll() is None:
            studio.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d passed, %d failed" % (passed, len(failures)))
    for f in failures:
        print("FAILED: " + f)
    return 1 if failures else 0


def run(studio, tmp, data):
    anon = Client(studio)
    status, health = anon.request("GET", "/api/health")
    check(status == 200 and health["setup_needed"] is True, "fresh studio: setup needed")
    check(anon.request("GET", "/api/projects")[0] == 401, "unauthenticated list: 401")
    status, _ = anon.request("POST", "/api/setup", {"name": "alice", "password": "short"})
    check(status == 400, "setup refuses a short password")
    status, admin = anon.request("POST", "/api/setup", {"name": "alice", "password": "alice-secret"})
    check(status == 201 and admin["admin"] is True, "setup creates the administrator")
    status, _ = anon.request("POST", "/api/setup", {"name": "mallory", "password": "mallory-secret"})
    check(status == 409, "a second setup is refused")
    check(anon.request("GET", "/api/health")[1]["setup_needed"] is False, "setup no longer needed")

    a = Client(studio)
    check(a.login("alice", "wrong-password")[0] == 401, "wrong password: 401")
    status, body = a.login("alice", "alice-secret")
    check(status == 200 and a.cookie and len(a.csrf) == 64, "login gives a cookie and a CSRF token")
    attrs = [p.strip() for p in a.set_cookie_header.split(";")]
    check("HttpOnly" in attrs and "SameSite=Strict" in attrs and "Path=/" in attrs,
          "session cookie is HttpOnly, SameSite=Strict, Path=/")
    status, _ = a.request("POST", "/api/projects", {"name": "x", "task": "classify"}, csrf=False)
    check(status == 403, "cookie POST without X-CSRF-Token: 403")
    status, _ = a.request("POST", "/api/projects", {"name": "x", "task": "classify"},
                          headers={"X-CSRF-Token": "0" * 64}, csrf=False)
    check(status == 403, "cookie POST with a wrong X-CSRF-Token: 403")
    status, _ = a.request("POST", "/api/projects", {"name": "x", "task": "segment"})
    check(status == 400, "an unknown task is refused")
    status, err = a.request("POST", "/api/projects", b'{"name": "x", ', headers={"Content-Type": "application/json"})
    check(status == 400 and "line" in err["error"], "malformed JSON: 400 naming the line")
    check(a.request("GET", "/api/nothing")[0] == 404, "unknown endpoint: 404")
    check(a.request("PUT", "/api/projects")[0] == 405, "wrong method: 405")
    status, proj = a.request("POST", "/api/projects", {"name": "colours", "task": "classify"})
    check(status == 201 and proj["task"] == "classify", "create a classification project")
    pid = proj["id"]

    status, tok = a.request("POST", "/api/tokens", {"name": "script"})
    check(status == 201 and tok["token"].startswith("kt_"), "create an API token")
    bot = Client(studio)
    bot.token = tok["token"]
    status, me = bot.request("GET", "/api/me")
    check(status == 200 and me["user"]["name"] == "alice", "Bearer token authenticates")
    bad = Client(studio)
    bad.token = tok["token"][:-1] + ("0" if tok["token"][-1] != "0" else "1")
    check(bad.request("GET", "/api/me")[0] == 401, "a wrong token: 401")

    # ---- uploads ----
    status, up = bot.request("POST", "/api/projects/%d/files" % pid, make_zip(),
                             headers={"X-Filename": "colours.zip", "Content-Type": "application/zip"})
    f = up["files"][0] if status == 201 else {}
    check(status == 201 and f.get("kind") == "archive" and f.get("added") == 37,
          "zip upload: 37 images added (%s)" % f.get("added"))
    check(f.get("format") == "folders" and isinstance(f.get("problems"), list),
          "zip upload reports its format and problems")
    status, proj = a.request("GET", "/api/projects/%d" % pid)
    check(sorted(proj["labels"]) == ["blue", "green", "red"], "the archive's labels join the project")
    extra = png_bytes(COLOURS["green"], 500)
    status, up = a.request("POST", "/api/projects/%d/files" % pid, extra,
                           headers={"X-Filename": "green/extra.png"})
    f = up["files"][0] if status == 201 else {}
    check(status == 201 and f["kind"] == "image" and f["added"] == 1 and
          f["hash"] == hashlib.sha256(extra).hexdigest(), "raw image upload, hash acknowledged")
    status, up = a.request("POST", "/api/projects/%d/files" % pid, extra,
                           headers={"X-Filename": "green/extra-again.png"})
    check(status == 201 and up["files"][0]["duplicates"] == 1, "the same bytes again: a duplicate")
    body, ctype = multipart([("red/m1.png", png_bytes(COLOURS["red"], 601)),
                             ("blue/m2.png", png_bytes(COLOURS["blue"], 602))])
    status, up = a.request("POST", "/api/projects/%d/files" % pid, body,
                           headers={"Content-Type": ctype})
    check(status == 201 and [x["added"] for x in up["files"]] == [1, 1], "multipart upload of two images")
    status, up = a.request("POST", "/api/projects/%d/files" % pid, b"just notes",
                           headers={"X-Filename": "notes.txt"})
    probs = up["files"][0]["problems"] if status == 201 else []
    check(status == 201 and probs and probs[0]["issue"] == "ignored_file" and "notes.txt" in probs[0]["message"],
          "a file that is not data is reported per file")
    status, _ = a.request("POST", "/api/projects/%d/files" % pid, b"x")
    check(status == 400, "a raw upload without X-Filename: 400")
    status, _ = a.request("POST", "/api/projects/%d/files" % pid, b"--zz\r\nContent-Disposition: form-data",
                          headers={"Content-Type": "multipart/form-data; boundary=zz"})
    check(status == 400, "a truncated multipart body: 400")

    # resumable upload in two chunks
    payload = png_bytes(COLOURS["blue"], 700)
    status, u = a.request("POST", "/api/projects/%d/uploads" % pid, {"name": "blue/resumed.png",
                                                                     "length": len(payload)})
    check(status == 201, "create a resumable upload")
    uid, half = u["id"], len(payload) // 2
    status, r = a.request("PATCH", "/api/uploads/%d" % uid, payload[:half], headers={"Upload-Offset": "0"})
    check(status == 200 and r["offset"] == half and not r["complete"], "first chunk stored")
    status, _, resp = a.request("HEAD", "/api/uploads/%d" % uid, raw=True)
    check(status == 200 and resp.getheader("Upload-Offset") == str(half), "HEAD tells the offset")
    status, _ = a.request("PATCH", "/api/uploads/%d" % uid, payload[half:], headers={"Upload-Offset": "1"})
    check(status == 409, "a chunk at the wrong offset: 409")
    status, r = a.request("PATCH", "/api/uploads/%d" % uid, payload[half:], headers={"Upload-Offset": str(half)})
    check(status == 200 and r["complete"] and r["file"]["added"] == 1 and
          r["file"]["hash"] == hashlib.sha256(payload).hexdigest(), "last chunk completes the file")

    # ---- the dataset ----
    status, lst = a.request("GET", "/api/projects/%d/images?limit=500" % pid)
    check(status == 200 and lst["total"] == 41 and len(lst["images"]) == 41, "41 images listed")
    status, page = a.request("GET", "/api/projects/%d/images?limit=10&offset=35" % pid)
    check(page["total"] == 41 and len(page["images"]) == 6, "paging")
    status, blue = a.request("GET", "/api/projects/%d/images?label=blue&limit=500" % pid)
    check(blue["total"] == 15 and all(i["label"] == "blue" for i in blue["images"]), "label filter")
    status, tr = a.request("GET", "/api/projects/%d/images?split=unassigned&limit=1" % pid)
    check(tr["total"] == 41, "split filter")
    wrong = [i for i in blue["images"] if i["source"].endswith("wrong.png")]
    check(len(wrong) == 1, "the mislabelled image is found by its source")
    wid = wrong[0]["id"]
    status, _ = a.request("PUT", "/api/projects/%d/images/%d/annotation" % (pid, wid), {"label": "purple"})
    check(status == 400, "a label the project lacks is refused")
    status, fixed = a.request("PUT", "/api/projects/%d/images/%d/annotation" % (pid, wid), {"label": "red"})
    check(status == 200 and fixed["label"] == "red", "label fixed")
    check(a.request("GET", "/api/projects/%d/images?label=blue" % pid)[1]["total"] == 14, "filter sees the fix")
    status, raw, resp = a.request("GET", "/api/projects/%d/images/%d/file" % (pid, wid), raw=True)
    check(status == 200 and hashlib.sha256(raw).hexdigest() == fixed["hash"], "image bytes served")
    status, thumb, resp = a.request("GET", "/api/projects/%d/images/%d/thumbnail" % (pid, wid), raw=True)
    check(status == 200 and thumb[:4] == b"\x89PNG", "thumbnail is a PNG")
    status, health = a.request("GET", "/api/projects/%d/health" % pid)
    check(status == 200 and health.get("usable") is True, "dataset health: usable")

    # ---- a detection project: boxes, problems, the box editor's endpoint ----
    status, dp = a.request("POST", "/api/projects", {"name": "kitchen", "task": "detect"})
    did = dp["id"]
    status, up = a.request("POST", "/api/projects/%d/files" % did, make_coco_zip(),
                           headers={"X-Filename": "kitchen.zip"})
    f = up["files"][0] if status == 201 else {}
    check(f.get("format") == "coco" and f.get("added") == 4, "COCO zip into a detection project: 4 images")
    check(any(p["issue"] == "box_clamped" for p in f.get("problems", [])), "the clamped box is reported")
    status, up = a.request("POST", "/api/projects/%d/files" % pid, make_coco_zip(),
                           headers={"X-Filename": "kitchen.zip"})
    f = up["files"][0] if status == 201 else {}
    check(f.get("added") == 0 and any(p["issue"] == "unusable" for p in f.get("problems", [])),
          "a detection archive is refused by a classification project")
    status, clamped = a.request("GET", "/api/projects/%d/images?problem=box_clamped" % did)
    check(clamped["total"] == 1 and clamped["images"][0]["source"].endswith("img0.png"),
          "problem filter finds the image with the clamped box")
    check(a.request("GET", "/api/projects/%d/images?problem=any" % did)[1]["total"] == 1, "problem=any")
    img0 = clamped["images"][0]
    boxes = sorted(img0["boxes"], key=lambda b: b["xmin"])
    check(len(boxes) == 2 and boxes[1]["xmax"] == 80 and boxes[1]["label"] == "plate",
          "boxes in pixels with label names, clamped to the image")
    path = "/api/projects/%d/images/%d/annotation" % (did, img0["id"])
    status, _ = a.request("PUT", path, {"boxes": [{"xmin": 5, "ymin": 5, "xmax": 90, "ymax": 20, "label": "cup"}]})
    check(status == 400, "a box outside the image is refused")
    status, _ = a.request("PUT", path, {"boxes": [{"xmin": 5, "ymin": 5, "xmax": 9, "ymax": 20, "label": "fork"}]})
    check(status == 400, "a box with an unknown label is refused")
    new_boxes = [{"xmin": 12.5, "ymin": 11, "xmax": 41, "ymax": 40, "label": "cup"},
                 {"xmin": 55, "ymin": 58, "xmax": 79, "ymax": 79, "label": "plate"}]
    status, edited = a.request("PUT", path, {"boxes": new_boxes, "split": "train"})
    check(status == 200 and edited["boxes"] == new_boxes and edited["split"] == "train", "boxes and split saved")
    status, ann = a.request("GET", path)
    check(status == 200 and ann["boxes"] == new_boxes and ann["width"] == 80 and ann["label"] is None,
          "annotation read back for the editor")
    status, up = a.request("POST", "/api/projects/%d/files" % did, png_bytes((90, 90, 90), 77),
                           headers={"X-Filename": "caf%C3%A9.png"})
    check(status == 201 and up["files"][0]["name"] == "caf\u00e9.png" and up["files"][0]["added"] == 1,
          "a percent-encoded X-Filename is decoded")
    status, health = a.request("GET", "/api/projects/%d/health" % did)
    check(status == 200 and health.get("task") == "detect" and health.get("usable") is True,
          "detection dataset health")

    # ---- training ----
    settings = {"preset": "fast", "calib_images": 8, "seed": 1}
    status, _ = a.request("POST", "/api/projects/%d/jobs" % pid, {"kind": "train", "settings": {"epochs": -1}})
    check(status == 400, "bad settings are refused")
    t0 = time.time()
    status, job = a.request("POST", "/api/projects/%d/jobs" % pid, {"kind": "train", "settings": settings})
    check(status == 201 and job["state"] in ("queued", "running"), "train job queued")
    jid = job["id"]
    ctype, events, end = follow_events(a, jid)
    train_s = time.time() - t0
    check(ctype == "text/event-stream", "events are text/event-stream")
    progress = [e["progress"] for e in events if "progress" in e]
    check(progress and progress[-1] == 1.0 and all(x <= y for x, y in zip(progress, progress[1:])),
          "progress rises to 1.0 (%d events)" % len(events))
    check(any(e.get("event") == "epoch" for e in events), "epoch events streamed")
    check(end and end["state"] == "done" and end["model_id"], "job ends done with a model (%.1f s)" % train_s)
    status, models = a.request("GET", "/api/projects/%d/models" % pid)
    check(status == 200 and len(models["models"]) == 1, "one model version")
    mid = end["model_id"]
    status, model = a.request("GET", "/api/models/%d" % mid)
    names = sorted(x["name"] for x in model["artifacts"])
    check(names == ["labels.txt", "model_float.tflite", "model_int8.tflite", "report.json"], "four artifacts")
    check(len(model["dataset_version"]) == 64 and model["settings"] == settings,
          "model version records the dataset version and settings")
    ev = model.get("report", {}).get("evaluation", {})
    check("float" in ev and "int8" in ev, "evaluation of both models in the report")
    check(0 <= model["metrics"]["int8_accuracy"] <= 1, "int8 accuracy recorded")
    art = {x["name"]: x for x in model["artifacts"]}
    status, int8, resp = a.request("GET", "/api/models/%d/artifacts/model_int8.tflite" % mid, raw=True)
    check(status == 200 and hashlib.sha256(int8).hexdigest() == art["model_int8.tflite"]["hash"]
          and "attachment" in (resp.getheader("Content-Disposition") or ""), "int8 model downloaded")
    status, labels_txt, _ = a.request("GET", "/api/models/%d/artifacts/labels.txt" % mid, raw=True)
    model_path, labels_path, img_path = (os.path.join(tmp, n) for n in ("m.tflite", "labels.txt", "red.png"))
    open(model_path, "wb").write(int8)
    open(labels_path, "wb").write(labels_txt)
    open(img_path, "wb").write(png_bytes(COLOURS["red"], 4242))
    out = subprocess.run([kiln_bin(), "classify", model_path, img_path, "--labels", labels_path, "--json",
                          "--top", "1"], capture_output=True, text=True)
    top = json.loads(out.stdout)["classes"][0] if out.returncode == 0 else {}
    check(top.get("label") == "red", "kiln classify runs the int8 model on a red picture: %s" % top)
    check(a.request("GET", "/api/models/%d/artifacts/nothing.bin" % mid)[0] == 404, "unknown artifact: 404")
    status, _ = a.request("POST", "/api/projects/%d/jobs" % pid, {"kind": "evaluate", "settings": {"model_id": 1}})
    check(status == 400, "evaluate of a model of no such version: 400")
    status, evj = a.request("POST", "/api/projects/%d/jobs" % pid,
                            {"kind": "evaluate", "settings": {"model_id": mid, "model": "int8"}})
    check(status == 201, "evaluate job queued")
    _, _, eend = follow_events(a, evj["id"])
    res = (eend or {}).get("result") or {}
    check(eend and eend["state"] == "done" and res.get("split") == "test", "evaluate job done")
    check(abs(res.get("evaluation", {}).get("accuracy", -1) - model["metrics"]["int8_accuracy"]) < 1e-9,
          "evaluate job's accuracy equals the training report's int8 accuracy (%s)" % res.get("evaluation", {}).get("accuracy"))

    # ---- access control ----
    status, _ = a.request("POST", "/api/users", {"name": "bob", "password": "bob-secret-1"})
    check(status == 201, "administrator adds user bob")
    b = Client(studio)
    b.login("bob", "bob-secret-1")
    status, lst = b.request("GET", "/api/projects")
    check(status == 200 and lst["projects"] == [], "bob lists no projects of alice")
    routes = route_table()
    spec = json.load(open(os.path.join(HERE, "..", "..", "docs", "openapi.json")))
    documented = sorted((m.upper(), p.replace("{id2}", "{id}")) for p, ops in spec["paths"].items() for m in ops)
    check(sorted(routes) == documented, "docs/openapi.json names exactly the served routes")
    ids = {"projects": pid, "images": wid, "uploads": uid, "jobs": jid, "models": mid, "tokens": tok["id"]}
    public = {("GET", "/api/health"), ("POST", "/api/setup"), ("POST", "/api/login")}
    tried = 0
    for method, pattern in routes:
        parts, path = pattern.strip("/").split("/"), []
        for i, seg in enumerate(parts):
            if seg == "{id}":
                seg = str(ids[parts[i - 1]])
            elif seg == "{name}":
                seg = "model_int8.tflite"
            path.append(seg)
        path = "/" + "/".join(path)
        body = {"name": "bob", "label": "red", "kind": "train", "length": 10, "task": "classify"}
        headers = {"X-Filename": "x.png", "Upload-Offset": str(half)}
        if (method, pattern) not in public:
            st_anon = anon.request(method, path, body, headers=headers)[0]
            check(st_anon == 401, "unauthenticated %s %s: 401 (got %d)" % (method, pattern, st_anon))
        if "{id}" not in pattern and not pattern.startswith("/api/users"):
            continue
        want = 403 if pattern.startswith("/api/users") else 404
        st_b = b.request(method, path, body, headers=headers)[0]
        check(st_b == want, "bob %s %s: %d (got %d)" % (method, pattern, want, st_b))
        tried += 1
    check(tried >= 20, "access checked on %d endpoints" % tried)
    status, proj = a.request("GET", "/api/projects/%d" % pid)
    check(status == 200 and proj["images"] == 41, "alice's project untouched")
    check(a.request("GET", "/api/projects/%d/images/%d" % (pid, wid))[1]["label"] == "red", "alice's label untouched")
    check(bot.request("GET", "/api/me")[0] == 200, "alice's token still works")
    status, p2 = a.request("POST", "/api/projects", {"name": "shared", "task": "detect", "labels": ["cup"]})
    status, _ = a.request("POST", "/api/projects/%d/members" % p2["id"], {"name": "bob"})
    check(status == 200, "alice invites bob")
    check(b.request("GET", "/api/projects/%d" % p2["id"])[1]["role"] == "member", "bob sees the shared project")
    check(b.request("DELETE", "/api/projects/%d" % p2["id"])[0] == 403, "a member cannot delete it")
    check(b.request("GET", "/api/projects/%d" % pid)[0] == 404, "bob still cannot see the other one")
    status, _ = b.request("POST", "/api/logout")
    check(status == 200 and b.request("GET", "/api/me")[0] == 401, "logout ends the session")

    # ---- cancel ----
    status, job2 = a.request("POST", "/api/projects/%d/jobs" % pid,
                             {"kind": "train", "settings": {"preset": "fast", "epochs": 5000, "batch": 2,
                                                            "seed": 2}})
    follow_events(a, job2["id"], until=lambda e: e.get("event") == "epoch")
    status, c = a.request("POST", "/api/jobs/%d/cancel" % job2["id"])
    check(status == 200, "cancel accepted")
    job2 = wait_job(a, job2["id"], ("canceled", "done", "failed"))
    check(job2["state"] == "canceled", "job canceled (state %s)" % job2["state"])

    # ---- kill -9 mid-training and right after an acknowledged upload ----
    status, job3 = a.request("POST", "/api/projects/%d/jobs" % pid,
                             {"kind": "train", "settings": {"preset": "fast", "epochs": 40, "batch": 2,
                                                            "seed": 3, "calib_images": 8}})
    _, ev3, _ = follow_events(a, job3["id"], until=lambda e: e.get("event") == "checkpoint")
    last = png_bytes(COLOURS["green"], 800)
    status, up = a.request("POST", "/api/projects/%d/files" % pid, last, headers={"X-Filename": "green/last.png"})
    acked = up["files"][0]["hash"] if status == 201 else None
    studio.proc.kill()
    studio.proc.wait()
    studio2 = Studio(data)
    studio.proc = studio2.proc
    a.studio = studio2
    a.login("alice", "alice-secret")
    status, lst = a.request("GET", "/api/projects/%d/images?limit=500" % pid)
    found = [i for i in lst["images"] if i["hash"] == acked]
    check(acked and len(found) == 1, "after kill -9 and restart the acknowledged image is listed")
    if found:
        status, raw, _ = a.request("GET", "/api/projects/%d/images/%d/file" % (pid, found[0]["id"]), raw=True)
        check(hashlib.sha256(raw).hexdigest() == acked, "its bytes hash to the acknowledged hash")
    _, ev3, end3 = follow_events(a, job3["id"])
    job3 = wait_job(a, job3["id"], ("done", "failed", "canceled"))
    starts = [e for e in ev3 if e.get("event") == "start"]
    check(job3["state"] == "done" and job3["attempts"] == 2,
          "the killed training job was leased again and finished (attempts %d)" % job3["attempts"])
    check(starts and starts[-1]["resumed"] is True, "the second attempt says it resumes")
    if job3["model_id"]:
        m3 = a.request("GET", "/api/models/%d" % job3["model_id"])[1]
        check(m3["metrics"]["resumed"] is True and m3["metrics"]["epochs"] == 40,
              "the trainer resumed from its checkpoint (%s)" % m3["metrics"])
    check(a.request("GET", "/api/models/%d" % mid)[0] == 200, "the model version survived too")
    # ---- SIGTERM during training: the job checkpoints, goes back to the queue, resumes ----
    status, job4 = a.request("POST", "/api/projects/%d/jobs" % pid,
                             {"kind": "train", "settings": {"preset": "fast", "epochs": 40, "batch": 2,
                                                            "seed": 4, "calib_images": 8}})
    follow_events(a, job4["id"], until=lambda e: e.get("event") == "checkpoint")
    check(studio2.stop() == 0, "studio stops cleanly on SIGTERM while training")
    studio3 = Studio(data)
    studio.proc = studio3.proc
    a.studio = studio3
    a.login("alice", "alice-secret")
    _, ev4, end4 = follow_events(a, job4["id"])
    check([e["event"] for e in ev4].count("paused") == 1 and end4 and end4["state"] == "done"
          and end4["attempts"] == 2, "the paused job resumed after the restart and finished")
    check(studio3.stop() == 0, "studio stops cleanly on SIGTERM")


if __name__ == "__main__":
    sys.exit(main())
