"""kiln studio figures: upload throughput of 1,000 JPEGs (224x224, one raw
POST each on one keep-alive connection, then the same count as one zip) and
the time from POST /jobs (Fast preset, 300 images) to the int8 model
downloaded. Usage: KILN_BIN=build/kiln KILN_MODELS=../shared/models
python bench/studio_bench.py [DATA_DIR]  (numpy and pillow needed)."""
import sys, os, time, io, json, zipfile, http.client, subprocess, re, shutil, tempfile
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "conformance"))
from test_studio_api import Studio, Client, png_bytes, COLOURS, follow_events
import numpy as np
from PIL import Image
data = sys.argv[1] if len(sys.argv) > 1 else os.path.join(tempfile.mkdtemp(prefix="kiln-studio-bench-"), "data")
shutil.rmtree(data, ignore_errors=True)
st = Studio(data, lease=60)
a = Client(st)
a.request("POST", "/api/setup", {"name": "admin", "password": "admin-secret"})
a.login("admin", "admin-secret")
pid = a.request("POST", "/api/projects", {"name": "b", "task": "classify"})[1]["id"]
rng = np.random.default_rng(0)
names = list(COLOURS)
imgs = []
for i in range(1000):
    c = names[i % 3]
    arr = np.clip(np.array(COLOURS[c])[None, None, :] + rng.normal(0, 30, (224, 224, 3)), 0, 255).astype(np.uint8)
    b = io.BytesIO(); Image.fromarray(arr).save(b, format="JPEG", quality=90); imgs.append((c, b.getvalue()))
total = sum(len(b) for _, b in imgs)
t = time.time()
conn = http.client.HTTPConnection(st.host, st.port)
for i, (c, b) in enumerate(imgs):
    conn.request("POST", "/api/projects/%d/files" % pid, body=b, headers={"X-Filename": "%s/%04d.jpg" % (c, i), "Cookie": "kiln_session=" + a.cookie, "X-CSRF-Token": a.csrf})
    r = conn.getresponse(); r.read(); assert r.status == 201, r.status
dt = time.time() - t
print("raw: 1000 images, %.1f MB in %.2f s: %.1f MB/s, %.0f images/s" % (total / 1e6, dt, total / 1e6 / dt, 1000 / dt))
# one zip of 1000 other images
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
    for i in range(1000):
        c = names[i % 3]
        arr = np.clip(np.array(COLOURS[c])[None, None, :] + rng.normal(0, 30, (224, 224, 3)), 0, 255).astype(np.uint8)
        b = io.BytesIO(); Image.fromarray(arr).save(b, format="JPEG", quality=90)
        z.writestr("set/%s/z%04d.jpg" % (c, i), b.getvalue())
zb = buf.getvalue()
pid2 = a.request("POST", "/api/projects", {"name": "z", "task": "classify"})[1]["id"]
t = time.time()
s, r = a.request("POST", "/api/projects/%d/files" % pid2, zb, headers={"X-Filename": "set.zip"})
dt = time.time() - t
print("zip: %d added, %.1f MB in %.2f s: %.1f MB/s" % (r["files"][0]["added"], len(zb) / 1e6, dt, len(zb) / 1e6 / dt))
# Train -> downloadable model, Fast preset, 300 images
pid3 = a.request("POST", "/api/projects", {"name": "t", "task": "classify"})[1]["id"]
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w") as z:
    for i in range(300):
        c = names[i % 3]; z.writestr("s/%s/%d.png" % (c, i), png_bytes(COLOURS[c], 10000 + i, size=128))
a.request("POST", "/api/projects/%d/files" % pid3, buf.getvalue(), headers={"X-Filename": "t.zip"})
t = time.time()
s, job = a.request("POST", "/api/projects/%d/jobs" % pid3, {"kind": "train", "settings": {"preset": "fast"}})
_, ev, end = follow_events(a, job["id"])
s, m, _ = a.request("GET", "/api/models/%d/artifacts/model_int8.tflite" % end["model_id"], raw=True)
print("train->int8 download, Fast, 300 images: %.1f s (state %s, int8 %d bytes)" % (time.time() - t, end["state"], len(m)))
st.stop()
shutil.rmtree(data, ignore_errors=True)
