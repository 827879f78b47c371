"""kiln serve on loopback, driven with real HTTP requests (http.client):

1. OIP v2 health, server and model metadata (names, versions, platform,
   inputs/outputs with datatype and shape as `kiln inspect --json` says).
2. /infer with JSON tensors (int8 two-input, uint8 broadcast, float
   classifier) equals `kiln run` on the same inputs, nested data too; the
   binary tensor extension for inputs and outputs, mixed with JSON.
3. :detect on the astronaut (JPEG body and multipart `file`) gives the
   boxes of `kiln detect --json`, a Person among them; :classify gives
   `kiln classify --json`'s classes; :predict with b64 instances gives the
   same answers with their keys.
4. Every kind of bad input gets its 4xx and a JSON error, and the server
   answers the next request.
5. /metrics parses as Prometheus text and counts the requests made.
6. SIGHUP reloads while requests run (none fails); a broken model file
   fails the reload and the old models keep serving.
7. A tiny queue (--queue 0, one interpreter) answers a burst with 503 +
   Retry-After instead of queueing; SIGTERM with requests in flight
   answers them, then exits 0 and closes the port.
"""
import base64
import http.client
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

from common import need_reference, models_dir, kiln_bin, run_kiln, write_classifier

need_reference()
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

failures = []
SSD = os.path.join(models_dir(), "ssd_mobilenet_v2_oidv4_fp16.tflite")
LABELS = os.path.join(models_dir(), "oidv4_labels.txt")
PHOTO = os.path.join(models_dir(), "..", "images", "astronaut.png")
OP_MODELS = os.environ.get("KILN_OP_MODELS", "")


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def kiln(*args):
    return subprocess.run([kiln_bin(), *args], capture_output=True, text=True)


class Server:
    def __init__(self, *args):
        self.p = subprocess.Popen([kiln_bin(), "serve", "--port", "0", *args], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        if not m:
            self.p.kill()
            raise RuntimeError(f"kiln serve did not start: {line!r} {self.p.stderr.read()}")
        self.port = int(m.group(1))

    def request(self, method, path, body=None, headers=None, timeout=120):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()

    def json(self, method, path, obj=None, headers=None):
        body = None if obj is None else json.dumps(obj).encode()
        h = {"Content-Type": "application/json"} if body is not None else {}
        h.update(headers or {})
        status, hdrs, data = self.request(method, path, body, h)
        return status, hdrs, json.loads(data) if data else None

    def alive(self):
        try:
            return self.request("GET", "/v2/health/live")[0] == 200
        except OSError:
            return False

    def stop(self, sig=signal.SIGTERM):
        self.p.send_signal(sig)
        try:
            rc = self.p.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.p.kill()
            rc = None
        return rc, self.p.stderr.read()


def dt_name(dtype):
    return {np.float32: "FP32", np.int8: "INT8", np.uint8: "UINT8"}[np.dtype(dtype).type]


def metadata_checks(srv):
    status, hdrs, body = srv.json("GET", "/v2/health/live")
    check(status == 200 and body == {"live": True} and hdrs["content-type"] == "application/json",
          f"GET /v2/health/live: {status} {body}")
    status, _, body = srv.json("GET", "/v2/health/ready")
    check(status == 200 and body == {"ready": True}, f"GET /v2/health/ready: {status} {body}")
    status, _, body = srv.json("GET", "/v2")
    check(status == 200 and body.get("name") == "kiln" and isinstance(body.get("version"), str) and
          "binary_tensor_data" in body.get("extensions", []), f"GET /v2: {body}")
    info = json.loads(kiln("inspect", SSD, "--json").stdout)
    status, _, meta = srv.json("GET", "/v2/models/ssd")
    want_in = [{"name": t["name"], "datatype": "FP32", "shape": t["shape"]} for t in info["inputs"]]
    want_out = [{"name": t["name"], "datatype": "FP32", "shape": t["shape"]} for t in info["outputs"]]
    check(status == 200 and meta["name"] == "ssd" and meta["versions"] == ["1"] and meta["platform"] == "tflite"
          and meta["inputs"] == want_in and meta["outputs"] == want_out,
          f"GET /v2/models/ssd: metadata as kiln inspect says ({meta})")
    status, _, meta = srv.json("GET", "/v2/models/add8/versions/1")
    check(status == 200 and [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] ==
          [("a", "INT8", [1, 5, 6, 7]), ("b", "INT8", [1, 5, 6, 7])], f"versions/1 metadata of the int8 model")
    for path in ("/v2/models/ssd/ready", "/v2/models/rgb/versions/1/ready"):
        status, _, body = srv.json("GET", path)
        check(status == 200 and body.get("ready") is True, f"GET {path}: {status}")
    status, _, body = srv.json("GET", "/v2/models/ssd/versions/2")
    check(status == 404 and "version" in body["error"], f"unknown version: 404 ({body})")


def infer_json(srv, model, inputs, outputs=None, nested=False):
    req = {"id": "r1", "inputs": [{"name": n, "shape": list(x.shape), "datatype": dt_name(x.dtype),
                                   "data": x.tolist() if nested else x.ravel().tolist()} for n, x in inputs]}
    if outputs:
        req["outputs"] = [{"name": o} for o in outputs]
    return srv.json("POST", f"/v2/models/{model}/infer", req)


def as_array(out):
    dt = {"FP32": np.float32, "INT8": np.int8, "UINT8": np.uint8}[out["datatype"]]
    return np.array(out["data"], dt).reshape(out["shape"])


def infer_checks(srv, models, rng):
    cases = [("add8", models["add8"], [("a", rng.integers(-128, 128, (1, 5, 6, 7), dtype=np.int8)),
                                        ("b", rng.integers(-128, 128, (1, 5, 6, 7), dtype=np.int8))]),
             ("add_u8", models["add_u8"], [("a", rng.integers(0, 256, (2, 5, 1, 7), dtype=np.uint8)),
                                            ("b", rng.integers(0, 256, (1, 1, 6, 7), dtype=np.uint8))]),
             ("rgb", models["rgb"], [("image", rng.uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32))])]
    for name, path, inputs in cases:
        out_names = ["probs"] if name == "rgb" else ["output"]
        ref, err = run_kiln(path, inputs, out_names)
        for nested in (False, True):
            status, _, body = infer_json(srv, name, inputs, nested=nested)
            ok = status == 200 and body["model_name"] == name and body["id"] == "r1" and ref is not None
            got = as_array(body["outputs"][0]) if ok else None
            check(ok and body["outputs"][0]["name"] == out_names[0] and got.dtype == ref[0].dtype and
                  np.array_equal(got, ref[0]),
                  f"/infer {name} ({'nested' if nested else 'flat'} JSON) == kiln run ({status} {err or ''})")

    # Binary tensor extension: input a binary, b as JSON, output binary.
    a, b = cases[0][2][0][1], cases[0][2][1][1]
    ref, _ = run_kiln(models["add8"], cases[0][2], ["output"])
    header = json.dumps({"inputs": [
        {"name": "a", "shape": [1, 5, 6, 7], "datatype": "INT8", "parameters": {"binary_data_size": a.nbytes}},
        {"name": "b", "shape": [1, 5, 6, 7], "datatype": "INT8", "data": b.ravel().tolist()}],
        "outputs": [{"name": "output", "parameters": {"binary_data": True}}]}).encode()
    status, hdrs, data = srv.request("POST", "/v2/models/add8/infer", header + a.tobytes(),
                                     {"Content-Type": "application/octet-stream",
                                      "Inference-Header-Content-Length": str(len(header))})
    ok = status == 200 and "inference-header-content-length" in hdrs
    if ok:
        hlen = int(hdrs["inference-header-content-length"])
        head = json.loads(data[:hlen])
        o = head["outputs"][0]
        got = np.frombuffer(data[hlen:], np.int8).reshape(o["shape"])
        ok = (o["parameters"]["binary_data_size"] == ref[0].nbytes and "data" not in o and
              len(data) == hlen + ref[0].nbytes and np.array_equal(got, ref[0]))
    check(ok, f"/infer binary input + binary output == kiln run ({status})")
    # Both inputs binary, outputs as JSON (binary_data_output false by default).
    header = json.dumps({"inputs": [
        {"name": n, "shape": [1, 5, 6, 7], "datatype": "INT8", "parameters": {"binary_data_size": 210}}
        for n in ("a", "b")]}).encode()
    status, hdrs, data = srv.request("POST", "/v2/models/add8/infer", header + a.tobytes() + b.tobytes(),
                                     {"Inference-Header-Content-Length": str(len(header))})
    ok = status == 200 and "inference-header-content-length" not in hdrs
    check(ok and np.array_equal(as_array(json.loads(data)["outputs"][0]), ref[0]),
          f"/infer two binary inputs, JSON output == kiln run ({status})")
    # binary_data_output for the float classifier.
    x = cases[2][2][0][1]
    ref, _ = run_kiln(models["rgb"], cases[2][2], ["probs"])
    req = json.dumps({"inputs": [{"name": "image", "shape": [1, 32, 32, 3], "datatype": "FP32",
                                  "parameters": {"binary_data_size": x.nbytes}}],
                      "parameters": {"binary_data_output": True}}).encode()
    status, hdrs, data = srv.request("POST", "/v2/models/rgb/infer", req + x.tobytes(),
                                     {"Inference-Header-Content-Length": str(len(req))})
    ok = status == 200 and "inference-header-content-length" in hdrs
    if ok:
        hlen = int(hdrs["inference-header-content-length"])
        got = np.frombuffer(data[hlen:], np.float32).reshape(1, 4)
        ok = np.array_equal(got, ref[0])
    check(ok, f"/infer FP32 binary in and out (binary_data_output) == kiln run ({status})")


def multipart(field, filename, data, ctype="image/jpeg"):
    boundary = "kilnboundary7MA4YWxkTrZu0gW"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: {ctype}\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def same_detections(got, want):
    if len(got) != len(want):
        return False
    for g, w in zip(got, want):
        if g["label"] != w["label"] or g["class_id"] != w["class_id"] or abs(g["score"] - w["score"]) > 1e-5:
            return False
        if any(abs(g["box"][k] - w["box"][k]) > 1e-3 for k in ("xmin", "ymin", "xmax", "ymax")):
            return False
    return True


def vision_checks(srv, models, jpeg, png):
    with open(jpeg, "rb") as f:
        jpeg_bytes = f.read()
    with open(png, "rb") as f:
        png_bytes = f.read()
    cli = json.loads(kiln("detect", SSD, jpeg, "--json", "--labels", LABELS).stdout)
    status, hdrs, data = srv.request("POST", "/v1/models/ssd:detect", jpeg_bytes, {"Content-Type": "image/jpeg"})
    body = json.loads(data)
    dets = body.get("detections", [])
    check(status == 200 and body["image"] == cli["image"] and same_detections(dets, cli["detections"]) and
          any(d["label"] == "Person" for d in dets) and set(body["timing_ms"]) >= {"decode", "invoke"},
          f":detect (JPEG body) == kiln detect --json, finds a Person: {[d['label'] for d in dets]}")
    mp, h = multipart("file", "astronaut.jpg", jpeg_bytes)
    status, _, data = srv.request("POST", "/v1/models/ssd:detect", mp, h)
    check(status == 200 and same_detections(json.loads(data)["detections"], cli["detections"]),
          f":detect (multipart file part) == kiln detect --json ({status})")
    lo = json.loads(kiln("detect", SSD, jpeg, "--json", "--labels", LABELS, "--threshold", "0.2",
                         "--max", "3").stdout)
    status, _, data = srv.request("POST", "/v1/models/ssd:detect?threshold=0.2&max=3", jpeg_bytes)
    check(status == 200 and same_detections(json.loads(data)["detections"], lo["detections"]),
          ":detect?threshold=0.2&max=3 == kiln detect --threshold 0.2 --max 3")

    cli = json.loads(kiln("classify", models["rgb"], png, "--labels", models["rgb_labels"], "--top", "4",
                          "--json").stdout)
    status, _, data = srv.request("POST", "/v1/models/rgb:classify?top=4", png_bytes, {"Content-Type": "image/png"})
    body = json.loads(data)
    got = [(c["class_id"], c.get("label"), round(c["score"], 5)) for c in body.get("classes", [])]
    want = [(c["class_id"], c.get("label"), round(c["score"], 5)) for c in cli["classes"]]
    check(status == 200 and got == want and len(got) == 4, f":classify == kiln classify --json: {got}")

    req = {"instances": [{"b64": base64.b64encode(jpeg_bytes).decode()},
                         {"image_bytes": {"b64": base64.b64encode(jpeg_bytes).decode()}, "key": "k2"}]}
    status, _, body = srv.json("POST", "/v1/models/ssd:predict", req)
    preds = body.get("predictions", []) if status == 200 else []
    ref = json.loads(kiln("detect", SSD, jpeg, "--json", "--labels", LABELS).stdout)["detections"]
    check(len(preds) == 2 and all(same_detections(p["detections"], ref) for p in preds) and
          preds[1].get("key") == "k2" and "key" not in preds[0], f":predict with b64 instances ({status})")


def png_header(width, height):
    """A small PNG whose header declares width x height (its data is short)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def raw_request(port, head):
    """Sends raw bytes (a request without its body) and returns status, body."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(head)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def bad_input_checks(srv, jpeg):
    with open(jpeg, "rb") as f:
        jpeg_bytes = f.read()
    good_b = {"name": "b", "shape": [1, 5, 6, 7], "datatype": "INT8", "data": [0] * 210}
    a0 = {"name": "a", "shape": [1, 5, 6, 7], "datatype": "INT8", "data": [0] * 210}
    J = {"Content-Type": "application/json"}
    cases = [
        ("truncated JPEG", "POST", "/v1/models/ssd:detect", jpeg_bytes[:len(jpeg_bytes) // 2], {"Content-Type": "image/jpeg"}, 400),
        ("not an image", "POST", "/v1/models/ssd:detect", b"hello world" * 10, {}, 400),
        ("text/plain to :detect", "POST", "/v1/models/ssd:detect", jpeg_bytes, {"Content-Type": "text/plain"}, 415),
        ("image/png to /infer", "POST", "/v2/models/add8/infer", b"{}", {"Content-Type": "image/png"}, 415),
        ("form-urlencoded to :classify", "POST", "/v1/models/rgb:classify", b"a=b", {"Content-Type": "application/x-www-form-urlencoded"}, 415),
        ("invalid JSON", "POST", "/v2/models/add8/infer", b'{"inputs": [', J, 400),
        ("JSON not an object", "POST", "/v2/models/add8/infer", b"[1, 2]", J, 400),
        ("wrong shape", "POST", "/v2/models/add8/infer", json.dumps({"inputs": [dict(a0, shape=[1, 5, 7, 6]), good_b]}).encode(), J, 400),
        ("huge shape", "POST", "/v2/models/add8/infer", json.dumps({"inputs": [dict(a0, shape=[1 << 40, 1 << 40]), good_b]}).encode(), J, 400),
        ("wrong datatype", "POST", "/v2/models/add8/infer", json.dumps({"inputs": [dict(a0, datatype="FP32"), good_b]}).encode(), J, 400),
        ("unknown datatype", "POST", "/v2/models/add8/infer", json.dumps({"inputs": [dict(a0, datatype="BYTES"), good_b]}).encode(), J, 400),
        ("value out of int8 range", "POST", "/v2/models/add8/infer", json.dumps({"inputs": [dict(a0, data=[300] * 210), good_b]}).encode(), J, 400),
        ("float in int8 data", "POST", "/v2/models/add8/infer", json.dumps({"inputs": [dict(a0, data=[0.5] * 210), good_b]}).encode(), J, 400),
        ("too few values", "POST", "/v2/models/add8/infer", json.dumps({"inputs": [dict(a0, data=[0] * 209), good_b]}).encode(), J, 400),
        ("too many values", "POST", "/v2/models/add8/infer", json.dumps({"inputs": [dict(a0, data=[0] * 211), good_b]}).encode(), J, 400),
        ("missing input", "POST", "/v2/models/add8/infer", json.dumps({"inputs": [a0]}).encode(), J, 400),
        ("duplicate input", "POST", "/v2/models/add8/infer", json.dumps({"inputs": [a0, a0, good_b]}).encode(), J, 400),
        ("unknown input", "POST", "/v2/models/add8/infer", json.dumps({"inputs": [a0, good_b, dict(a0, name="c")]}).encode(), J, 400),
        ("unknown output", "POST", "/v2/models/add8/infer", json.dumps({"inputs": [a0, good_b], "outputs": [{"name": "zz"}]}).encode(), J, 400),
        ("huge binary_data_size", "POST", "/v2/models/add8/infer", json.dumps({"inputs": [{"name": "a", "shape": [1, 5, 6, 7], "datatype": "INT8", "parameters": {"binary_data_size": 1 << 50}}, good_b]}).encode(), J, 400),
        ("empty body", "POST", "/v2/models/add8/infer", b"", J, 400),
        ("unknown model", "POST", "/v2/models/nosuch/infer", b"{}", J, 404),
        ("unknown model :detect", "POST", "/v1/models/nosuch:detect", jpeg_bytes, {}, 404),
        ("unknown route", "GET", "/v3/whatever", None, {}, 404),
        ("unknown verb", "POST", "/v1/models/ssd:explode", jpeg_bytes, {}, 404),
        ("GET on /infer", "GET", "/v2/models/add8/infer", None, {}, 405),
        ("DELETE on a model", "DELETE", "/v2/models/add8", None, {}, 405),
        (":classify on a detector", "POST", "/v1/models/ssd:classify", jpeg_bytes, {}, 400),
        (":detect on a tensor model", "POST", "/v1/models/add8:detect", jpeg_bytes, {}, 400),
        (":predict on a tensor model", "POST", "/v1/models/add8:predict", b'{"instances": []}', J, 400),
        ("threshold out of range", "POST", "/v1/models/ssd:detect?threshold=2", jpeg_bytes, {}, 400),
        ("top not a number", "POST", "/v1/models/rgb:classify?top=x", jpeg_bytes, {}, 400),
        ("bad base64", "POST", "/v1/models/ssd:predict", b'{"instances": [{"b64": "!!!notbase64"}]}', J, 400),
        ("instances not a list", "POST", "/v1/models/ssd:predict", b'{"instances": 3}', J, 400),
        ("image too many pixels", "POST", "/v1/models/ssd:detect", png_header(60000, 60000), {"Content-Type": "image/png"}, 413),
        ("header length past the body", "POST", "/v2/models/add8/infer", b'{"inputs": []}', {"Inference-Header-Content-Length": "999"}, 400),
    ]
    mp, h = multipart("picture", "x.jpg", jpeg_bytes)
    cases.append(("multipart without a file part", "POST", "/v1/models/ssd:detect", mp, h, 400))
    for what, method, path, body, headers, want in cases:
        status, hdrs, data = srv.request(method, path, body, headers)
        try:
            err = json.loads(data).get("error")
        except ValueError:
            err = None
        extra = ""
        if want == 405:
            extra = " Allow: " + hdrs.get("allow", "missing")
            err = err if "allow" in hdrs else None
        check(status == want and isinstance(err, str) and err and srv.alive(),
              f"{what}: {status} (want {want}) {err!r}{extra}; still serving")
    # A declared body over --max-body is refused before it is sent.
    status, body = raw_request(srv.port, b"POST /v2/models/add8/infer HTTP/1.1\r\nHost: x\r\n"
                                         b"Content-Type: application/json\r\nContent-Length: 1000000000000\r\n\r\n")
    check(status == 413 and "limit" in json.loads(body)["error"] and srv.alive(),
          f"Content-Length 10^12: 413 before the body ({status})")


def parse_prometheus(text):
    """Returns ({(name, labels): value}, {name: type}); raises on a bad line."""
    samples, types = {}, {}
    line_re = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? (\S+)$')
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
            continue
        if line.startswith("#") or not line:
            continue
        m = line_re.match(line)
        if not m:
            raise ValueError(f"bad line {line!r}")
        labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', m.group(3) or "")))
        base = re.sub(r"_(bucket|sum|count)$", "", m.group(1))
        if m.group(1) not in types and base not in types:
            raise ValueError(f"sample before its TYPE: {line!r}")
        samples[(m.group(1), labels)] = float(m.group(4))
    return samples, types


def scrape(srv):
    status, hdrs, data = srv.request("GET", "/metrics")
    assert status == 200 and hdrs["content-type"].startswith("text/plain")
    return parse_prometheus(data.decode())


def metrics_checks(srv, png):
    with open(png, "rb") as f:
        png_bytes = f.read()
    try:
        before, types = scrape(srv)
    except (ValueError, AssertionError) as e:
        check(False, f"/metrics parses: {e}")
        return
    for _ in range(3):
        srv.request("POST", "/v1/models/rgb:classify", png_bytes)
    srv.request("POST", "/v1/models/rgb:classify?top=0", png_bytes)
    srv.request("GET", "/nowhere")
    after, types = scrape(srv)
    check(types.get("kiln_request_duration_seconds") == "histogram" and
          types.get("kiln_queue_depth") == "gauge", "/metrics parses as Prometheus text with TYPE lines")

    def delta(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)
    check(delta("kiln_inference_requests_total", model="rgb", endpoint="classify") == 4 and
          delta("kiln_inference_errors_total", model="rgb", endpoint="classify") == 1,
          "metrics count the 4 :classify requests and the 1 error")
    check(delta("kiln_http_requests_total", code="200") == 4 and delta("kiln_http_requests_total", code="404") == 1
          and delta("kiln_http_requests_total", code="400") == 1,
          "kiln_http_requests_total by code: 3 classify + 1 scrape = 4 x 200, 1 x 400, 1 x 404")
    buckets = sorted((float(dict(k[1])["le"]), v) for k, v in after.items()
                     if k[0] == "kiln_request_duration_seconds_bucket" and dict(k[1])["model"] == "rgb")
    count = after[("kiln_request_duration_seconds_count", (("model", "rgb"),))]
    check(buckets and all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:])) and buckets[-1][0] == float("inf")
          and buckets[-1][1] == count and delta("kiln_request_duration_seconds_count", model="rgb") == 4,
          f"latency histogram: cumulative buckets, +Inf == count ({count})")
    check(after.get(("kiln_queue_depth", (("model", "ssd"),))) == 0, "queue depth 0 when idle")


def reload_checks(srv, rgb_copy, jpeg):
    with open(jpeg, "rb") as f:
        jpeg_bytes = f.read()
    results, stop = [], threading.Event()

    def client(model_path, body, headers):
        while not stop.is_set():
            try:
                results.append(srv.request("POST", model_path, body, headers)[0])
            except OSError as e:
                results.append(str(e))

    threads = [threading.Thread(target=client, args=("/v1/models/ssd:detect", jpeg_bytes, {}), daemon=True),
               threading.Thread(target=client, args=("/v1/models/rgb:classify", jpeg_bytes, {}), daemon=True)]
    for t in threads:
        t.start()
    samples = {}
    try:
        for _ in range(3):
            time.sleep(0.5)
            srv.p.send_signal(signal.SIGHUP)
        deadline = time.time() + 60
        while time.time() < deadline:
            samples, _ = scrape(srv)
            if samples.get(("kiln_model_reloads_total", ())) == 3:
                break
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    check(samples.get(("kiln_model_reloads_total", ())) == 3, "3 SIGHUP reloads counted")
    check(len(results) > 5 and all(r == 200 for r in results),
          f"requests during reloads: {len(results)}, all 200 ({sorted(set(map(str, results)))})")
    with open(rgb_copy + ".new", "wb") as f:  # replaced by rename: the loaded model maps its file
        f.write(b"not a model")
    os.replace(rgb_copy + ".new", rgb_copy)
    srv.p.send_signal(signal.SIGHUP)
    deadline = time.time() + 60
    while time.time() < deadline:
        samples, _ = scrape(srv)
        if samples.get(("kiln_model_reload_failures_total", ())) == 1:
            break
        time.sleep(0.2)
    status, _, _ = srv.request("POST", "/v1/models/rgb:classify", jpeg_bytes)
    check(samples.get(("kiln_model_reload_failures_total", ())) == 1 and status == 200,
          "a broken model file fails the reload; the old models keep serving")


def queue_and_drain_checks(jpeg):
    with open(jpeg, "rb") as f:
        jpeg_bytes = f.read()
    srv = Server("--model", f"ssd={SSD},labels={LABELS}", "--threads", "1", "--interpreters", "1", "--queue", "0")
    results = []
    barrier = threading.Barrier(8)

    def fire():
        barrier.wait()
        results.append(srv.request("POST", "/v1/models/ssd:detect", jpeg_bytes))

    threads = [threading.Thread(target=fire, daemon=True) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    busy = [r for r in results if r[0] == 503]
    check(len(busy) >= 1 and all(r[0] in (200, 503) for r in results) and
          all(r[1].get("retry-after") == "1" and "busy" in json.loads(r[2])["error"] for r in busy),
          f"burst of 8 on --queue 0: {[r[0] for r in results]}, 503s carry Retry-After and a JSON error")
    samples, _ = scrape(srv)
    check(samples.get(("kiln_inference_rejected_total", (("model", "ssd"),))) == len(busy),
          f"kiln_inference_rejected_total counts the {len(busy)} refused")

    # SIGTERM while a :predict of 3 images runs: it is answered, then exit 0.
    req = json.dumps({"instances": [{"b64": base64.b64encode(jpeg_bytes).decode()}] * 3}).encode()
    answer = []
    t = threading.Thread(target=lambda: answer.append(srv.request("POST", "/v1/models/ssd:predict", req,
                                                                  {"Content-Type": "application/json"})),
                         daemon=True)
    t.start()
    deadline, in_flight = time.time() + 30, False
    while time.time() < deadline and not in_flight:
        samples, _ = scrape(srv)
        in_flight = samples.get(("kiln_requests_in_flight", (("model", "ssd"),))) == 1 and not answer
    rc, err = srv.stop()
    t.join()
    ok = in_flight and answer and answer[0][0] == 200 and len(json.loads(answer[0][2])["predictions"]) == 3
    check(ok, f"a request in flight at SIGTERM is answered ({answer[0][0] if answer else 'none'})")
    check(rc == 0 and "stopped" in err, f"SIGTERM: exit {rc}")
    try:
        socket.create_connection(("127.0.0.1", srv.port), timeout=5).close()
        closed = False
    except OSError:
        closed = True
    check(closed, "the port is closed after SIGTERM")


def main():
    rng = np.random.default_rng(5)
    if not OP_MODELS or not os.path.isdir(OP_MODELS):
        print("FAIL: KILN_OP_MODELS (gen_op_models output) missing")
        sys.exit(1)
    r = kiln("serve", "--help")
    check(r.returncode == 0 and r.stdout.startswith("usage: kiln serve"), "kiln serve --help")
    r = kiln("serve", "--model", "x")
    check(r.returncode == 2 and "NAME=PATH" in r.stderr, "kiln serve --model without a path: usage error")
    r = kiln("serve", "--model", "m=/nonexistent.tflite", "--port", "0")
    check(r.returncode == 1 and "/nonexistent.tflite" in r.stderr, "kiln serve with a missing model file: exit 1")
    with tempfile.TemporaryDirectory() as tmp:
        rgb = os.path.join(tmp, "rgb.tflite")
        write_classifier(rgb, np.array([[4, 0, 0], [0, 4, 0], [0, 0, 4], [0, 0, 0]], np.float32), np.zeros(4, np.float32))
        rgb_labels = os.path.join(tmp, "labels.txt")
        with open(rgb_labels, "w") as f:
            f.write("red\ngreen\nblue\nnothing\n")
        rgb_copy = os.path.join(tmp, "rgb_copy.tflite")
        shutil.copy(rgb, rgb_copy)
        jpeg = os.path.join(tmp, "astronaut.jpg")
        Image.open(PHOTO).convert("RGB").save(jpeg, quality=90)
        models = {"rgb": rgb, "rgb_labels": rgb_labels, "add8": os.path.join(OP_MODELS, "add_s8_same.tflite"),
                  "add_u8": os.path.join(OP_MODELS, "add_u8_bcast.tflite")}
        srv = Server("--model", f"ssd={SSD},labels={LABELS}", "--model", f"rgb={rgb_copy},labels={rgb_labels}",
                     "--model", f"add8={models['add8']}", "--model", f"add_u8={models['add_u8']}",
                     "--threads", "2", "--max-body", "4000000")
        try:
            metadata_checks(srv)
            infer_checks(srv, models, rng)
            vision_checks(srv, models, jpeg, PHOTO)
            bad_input_checks(srv, jpeg)
            metrics_checks(srv, PHOTO)
            reload_checks(srv, rgb_copy, jpeg)
        finally:
            rc, err = srv.stop()
        check(rc == 0, f"main server: SIGTERM exit {rc} {err.strip().splitlines()[-3:]}")
        queue_and_drain_checks(jpeg)
    print(f"{0 if failures else 1} passed, {1 if failures else 0} failed")
    sys.exit(1 if failures else 0)


main()
