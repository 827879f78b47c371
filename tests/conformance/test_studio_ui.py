"""kiln studio's web UI end to end in a real browser.

Playwright (PyPI) drives Debian's Chromium headless (/usr/bin/chromium) on
loopback against `kiln studio --port 0`:
- the embedded files: / and /static/*.js with their Content-Type, a strict
  Content-Security-Policy, an ETag answered with 304, 404 and 405;
- first run: the administrator is created in the page; a detection project;
- a COCO zip uploaded with the file picker: per-file progress and its
  validation message (a box that runs off its image) listed; the thumbnail
  grid with boxes drawn; dataset health;
- the box editor: a box's corner handle dragged and an arrow key pressed,
  both autosaved (checked through the API);
- training with the Fast preset (epochs lowered in the advanced settings to
  keep the test short), followed live to 100 %; the evaluation read;
- the int8 model downloaded from the page and run by `kiln detect`;
- Try it: a picture dropped in, the predictions listed;
- a wrong password shows the server's error text; no console errors (a CSP
  violation is one).
Screenshots go to $KILN_ARTIFACTS (default: artifacts/studio_ui here).
Exit 77 when Playwright or Chromium is missing, unless CI=true.
"""
import http.client
import io
import json
import os
import subprocess
import sys
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import SKIP, kiln_bin  # noqa: E402
from test_studio_api import COLOURS as CLASS_COLOURS, Studio, make_zip, png_bytes  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
failures = []
passed = 0


def check(cond, what):
    global passed
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if cond:
        passed += 1
    else:
        failures.append(what)


def need_browser():
    try:
        from playwright.sync_api import sync_playwright  # noqa: F401
        if not os.path.exists(CHROMIUM):
            raise ImportError(CHROMIUM + " not found (apt-get install chromium)")
    except ImportError as e:
        if os.environ.get("CI", "").lower() == "true":
            print("FAIL: browser test needs Playwright and Chromium under CI: %s" % e)
            sys.exit(1)
        print("SKIP: %s" % e)
        sys.exit(SKIP)


def picture(rng, colour, x, y, w, size):
    import numpy as np
    from PIL import Image
    img = np.full((size, size, 3), 90, np.uint8) + rng.integers(0, 20, (size, size, 3), dtype=np.uint8)
    img[y:y + w, x:x + w] = colour
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


COLOURS = {1: (220, 40, 40), 2: (40, 40, 220)}


def coco_zip(n=24, size=96):
    """n pictures, each with one red cup or blue plate square; COCO boxes.
    One extra box runs off its picture (a box_clamped warning)."""
    import numpy as np
    rng = np.random.default_rng(7)
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "cup"}, {"id": 2, "name": "plate"}]}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i in range(n):
            c = 1 + i % 2
            x, y, w = int(rng.integers(4, 40)), int(rng.integers(4, 40)), 36
            z.writestr("det/img%02d.png" % i, picture(rng, COLOURS[c], x, y, w, size))
            coco["images"].append({"id": i + 1, "file_name": "img%02d.png" % i, "width": size, "height": size})
            coco["annotations"].append({"id": i + 1, "image_id": i + 1, "category_id": c, "bbox": [x, y, w, w],
                                        "iscrowd": 0, "area": w * w})
        coco["annotations"].append({"id": 99, "image_id": n, "category_id": 1, "bbox": [80, 80, 30, 30],
                                    "iscrowd": 0, "area": 900})
        z.writestr("det/annotations.json", json.dumps(coco))
    return buf.getvalue()


def static_files(studio):
    def get(method, path, headers=None):
        c = http.client.HTTPConnection(studio.host, studio.port, timeout=30)
        c.request(method, path, headers=headers or {})
        r = c.getresponse()
        body = r.read()
        c.close()
        return r, body
    r, body = get("GET", "/")
    csp = r.getheader("Content-Security-Policy") or ""
    check(r.status == 200 and r.getheader("Content-Type").startswith("text/html") and b"/static/app.js" in body,
          "GET / serves index.html")
    check("script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp,
          "strict Content-Security-Policy: %s" % csp)
    check(b"<script>" not in body and b"onclick=" not in body, "no inline script in index.html")
    check(r.getheader("Cache-Control") == "no-cache" and r.getheader("X-Content-Type-Options") == "nosniff",
          "Cache-Control no-cache, nosniff")
    r2, _ = get("GET", "/", {"If-None-Match": r.getheader("ETag")})
    check(r2.status == 304, "unchanged file: 304 with its ETag")
    r, body = get("GET", "/static/app.js")
    check(r.status == 200 and r.getheader("Content-Type").startswith("text/javascript") and b"import" in body,
          "/static/app.js is text/javascript")
    r, _ = get("GET", "/static/style.css")
    check(r.status == 200 and r.getheader("Content-Type").startswith("text/css"), "/static/style.css is text/css")
    check(get("GET", "/static/nothing.js")[0].status == 404, "unknown static file: 404")
    check(get("POST", "/")[0].status == 405, "POST /: 405")
    r, body = get("GET", "/api/nothing")
    check(r.status == 404 and b"error" in body, "/api/ paths still reach the API")


def main():
    need_browser()
    from playwright.sync_api import sync_playwright, expect
    tmp = tempfile.mkdtemp(prefix="kiln-studio-ui-")
    shots = os.environ.get("KILN_ARTIFACTS") or os.path.join(os.getcwd(), "artifacts", "studio_ui")
    os.makedirs(shots, exist_ok=True)
    studio = Studio(os.path.join(tmp, "data"))
    try:
        static_files(studio)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            try:
                run(browser, expect, studio, tmp, shots)
            except Exception as e:  # a Playwright wait that timed out: keep the page
                check(False, "browser flow: %s" % str(e).splitlines()[0])
                for page in browser.contexts[0].pages if browser.contexts else []:
                    page.screenshot(path=os.path.join(shots, "failure.png"), full_page=True)
                    print(page.locator("main").inner_text()[:3000])
            finally:
                browser.close()
    finally:
        code = studio.stop()
    check(code == 0, "studio stops cleanly (exit %s)" % code)
    print("%d checks passed, %d failed" % (passed, len(failures)))
    for f in failures:
        print("FAILED: " + f)
    return 1 if failures else 0


def run(browser, expect, studio, tmp, shots):
    base = "http://%s:%d" % (studio.host, studio.port)
    context = browser.new_context(accept_downloads=True, viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30000)
    console = []
    bad = []  # answers >= 400 other than those the flow provokes
    page.on("console", lambda m: console.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource") else None)
    page.on("response", lambda r: bad.append("%d %s" % (r.status, r.url)) if r.status >= 400 and not (
        (r.status == 401 and r.url.endswith(("/api/me", "/api/login"))) or
        (r.status == 400 and "/try" in r.url)) else None)
    page.on("pageerror", lambda e: console.append(str(e)))

    def shot(name):
        page.screenshot(path=os.path.join(shots, name + ".png"), full_page=True)

    def api(path):
        r = context.request.get(base + path)
        return r.status, r.json()

    # ---- first run: the administrator ----
    page.goto(base + "/")
    page.wait_for_url("**/#/setup")
    expect(page.get_by_role("heading", name="Create the administrator")).to_be_visible()
    shot("01_setup")
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill("admin-secret-1")
    page.get_by_role("button", name="Create administrator").click()
    expect(page.get_by_role("heading", name="Projects")).to_be_visible()
    expect(page.get_by_text("No projects yet")).to_be_visible()
    check(True, "administrator created; empty projects list explained")

    # ---- a detection project ----
    page.get_by_label("Project name").fill("kitchen")
    page.get_by_label("Task").select_option("detect")
    page.get_by_label("Labels").fill("cup, plate")
    page.get_by_role("button", name="Create project").click()
    page.wait_for_url("**/#/p/*/data")
    pid = int(page.url.split("/p/")[1].split("/")[0])
    status, proj = api("/api/projects/%d" % pid)
    check(status == 200 and proj["task"] == "detect" and proj["labels"] == ["cup", "plate"],
          "detection project created from the page")
    expect(page.get_by_text("No images yet")).to_be_visible()
    check(True, "empty dataset explained")

    # ---- upload ----
    page.set_input_files("#file-pick", files=[{"name": "kitchen.zip", "mimeType": "application/zip",
                                               "buffer": coco_zip()}])
    status_cell = page.locator(".uploads .status")
    expect(status_cell).to_contain_text("24 images added", timeout=60000)
    check(page.locator(".uploads progress").get_attribute("value") == "1", "upload progress reached 1")
    expect(page.locator(".uploads .problems li").first).to_be_visible()
    check("outside" in page.locator(".uploads .problems").inner_text(),
          "per-file validation message listed: %s" % page.locator(".uploads .problems").inner_text()[:120])
    expect(page.locator("ul.grid li a")).to_have_count(24)
    check(page.locator("ul.grid svg rect").count() >= 24, "thumbnails with boxes drawn")
    expect(page.locator(".health")).to_contain_text("Usable for training")
    page.get_by_label("Problem").select_option("box_clamped")
    expect(page.locator("ul.grid li a")).to_have_count(1)
    check(True, "filter by problem: one image")
    shot("02_dataset")
    page.get_by_label("Problem").select_option("")

    # ---- the box editor ----
    page.locator("ul.grid li a").first.click()
    page.wait_for_url("**/#/p/*/edit/*")
    iid = int(page.url.rsplit("/", 1)[1])
    _, before = api("/api/projects/%d/images/%d/annotation" % (pid, iid))
    canvas = page.locator("#editor-canvas")
    scale = float(canvas.get_attribute("data-scale"))
    bb = canvas.bounding_box()
    b = before["boxes"][0]
    cx, cy = bb["x"] + (b["xmin"] + b["xmax"]) / 2 * scale, bb["y"] + (b["ymin"] + b["ymax"]) / 2 * scale
    page.mouse.click(cx, cy)  # selects the box: its handles appear
    hx, hy = bb["x"] + b["xmax"] * scale, bb["y"] + b["ymax"] * scale
    page.mouse.move(hx, hy)
    page.mouse.down()
    page.mouse.move(hx + 10 * scale, hy + 8 * scale, steps=5)
    page.mouse.up()
    expect(page.locator("#save-state")).to_have_text("Saved", timeout=10000)
    page.wait_for_timeout(200)
    _, after = api("/api/projects/%d/images/%d/annotation" % (pid, iid))
    a = after["boxes"][0]
    check(abs(a["xmax"] - min(96, b["xmax"] + 10)) <= 1 and abs(a["ymax"] - min(96, b["ymax"] + 8)) <= 1
          and a["xmin"] == b["xmin"], "corner handle dragged: box %s -> %s (saved)" % (
              [b["xmin"], b["ymin"], b["xmax"], b["ymax"]], [a["xmin"], a["ymin"], a["xmax"], a["ymax"]]))
    page.keyboard.press("ArrowLeft")
    expect(page.locator("#save-state")).to_have_text("Saved", timeout=10000)
    page.wait_for_timeout(900)
    expect(page.locator("#save-state")).to_have_text("Saved", timeout=10000)
    _, moved = api("/api/projects/%d/images/%d/annotation" % (pid, iid))
    m = moved["boxes"][0]
    check(abs(m["xmin"] - (a["xmin"] - 1)) < 1e-6 and abs(m["xmax"] - (a["xmax"] - 1)) < 1e-6,
          "arrow key moved the box one pixel (autosaved)")
    label_before = m["label"]
    page.keyboard.press("2" if label_before == "cup" else "1")
    page.wait_for_timeout(900)
    expect(page.locator("#save-state")).to_have_text("Saved", timeout=10000)
    _, relabelled = api("/api/projects/%d/images/%d/annotation" % (pid, iid))
    check(relabelled["boxes"][0]["label"] != label_before, "number key relabelled the box: %s -> %s" % (
        label_before, relabelled["boxes"][0]["label"]))
    page.keyboard.press("2" if label_before != "cup" else "1")  # back, so the data stays as generated
    page.keyboard.press("Control+s")
    page.wait_for_timeout(300)
    expect(page.locator("#save-state")).to_have_text("Saved", timeout=10000)
    check(api("/api/projects/%d/images/%d/annotation" % (pid, iid))[1]["boxes"][0]["label"] == label_before,
          "Ctrl+S saved at once")
    x1, y1 = m["xmin"] - 1, m["ymin"] - 1  # the corner above-left of the box is free
    page.mouse.move(bb["x"] + 1 * scale, bb["y"] + 1 * scale)
    page.mouse.down()
    page.mouse.move(bb["x"] + x1 * scale, bb["y"] + y1 * scale, steps=4)
    page.mouse.up()
    page.wait_for_timeout(900)
    expect(page.locator("#save-state")).to_have_text("Saved", timeout=10000)
    drawn = api("/api/projects/%d/images/%d/annotation" % (pid, iid))[1]["boxes"]
    check(len(drawn) == 2 and abs(drawn[1]["xmax"] - x1) <= 1 and abs(drawn[1]["ymax"] - y1) <= 1,
          "a new box drawn by dragging: %s" % drawn[1:])
    shot("03_editor")
    page.keyboard.press("Delete")
    page.wait_for_timeout(900)
    expect(page.locator("#save-state")).to_have_text("Saved", timeout=10000)
    check(len(api("/api/projects/%d/images/%d/annotation" % (pid, iid))[1]["boxes"]) == 1,
          "Delete removed the selected box")

    # ---- training ----
    page.get_by_role("link", name="Train").click()
    expect(page.get_by_role("heading", name="Train a model")).to_be_visible()
    check(page.get_by_label("Fast").is_checked(), "Fast preset chosen by default")
    page.get_by_text("Advanced settings").click()
    page.get_by_label("Epochs").fill("8")
    page.get_by_label("Calibration images (int8)").fill("4")
    page.get_by_role("button", name="Start training").click()
    expect(page.locator("#job-percent")).to_have_text("100 %", timeout=120000)
    expect(page.locator("#job-state")).to_have_text("done", timeout=30000)
    check(page.locator("#job-speed").inner_text().endswith("images/s") and "–" not in page.locator("#job-speed").inner_text(),
          "images/s shown: " + page.locator("#job-speed").inner_text())
    check(page.locator("#job-eta").inner_text().startswith("ETA"), "ETA shown")
    shot("04_training")

    # ---- results ----
    page.locator("#results-link").click()
    expect(page.locator("#eval-summary")).to_be_visible()
    text = page.locator("#eval-summary").inner_text()
    check("mAP" in text and "int8" in text and "float" in text, "evaluation: mAP, float and int8 side by side")
    rows = page.locator("#per-class tbody tr")
    check(rows.count() == 2, "per-class AP for cup and plate")
    shot("05_results")
    with page.expect_download() as dl:
        page.locator("a[data-artifact='model_int8.tflite']").click()
    model_path = os.path.join(tmp, "model_int8.tflite")
    dl.value.save_as(model_path)
    with page.expect_download() as dl:
        page.locator("a[data-artifact='labels.txt']").click()
    labels_path = os.path.join(tmp, "labels.txt")
    dl.value.save_as(labels_path)
    import numpy as np
    img_path = os.path.join(tmp, "cup.png")
    open(img_path, "wb").write(picture(np.random.default_rng(5), COLOURS[1], 30, 20, 36, 96))
    out = subprocess.run([kiln_bin(), "detect", model_path, img_path, "--labels", labels_path, "--json"],
                         capture_output=True, text=True)
    res = json.loads(out.stdout) if out.returncode == 0 else {}
    check(out.returncode == 0 and "detections" in res,
          "kiln detect runs the downloaded int8 model (%s)" % (out.stderr.strip() or
                                                              [d["label"] for d in res["detections"]]))

    # ---- try it ----
    page.get_by_role("link", name="Try it").click()
    page.set_input_files("#try-file", files=[{"name": "cup.png", "mimeType": "image/png",
                                              "buffer": open(img_path, "rb").read()}])
    expect(page.locator("#predictions li").first).to_be_visible(timeout=30000)
    preds = page.locator("#predictions").inner_text()
    check(len(res.get("detections", [])) == 0 and "nothing found" in preds or
          all(d["label"] in preds for d in res.get("detections", [])),
          "Try it shows the same predictions as kiln detect: %s" % preds.replace("\n", "; "))
    shot("06_try")
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(9).integers(0, 256, (1500, 1500, 3), dtype=np.uint8)).save(buf, format="PNG")
    check(len(buf.getvalue()) > (1 << 20), "a %.1f MiB picture" % (len(buf.getvalue()) / (1 << 20)))
    page.locator("#predictions").evaluate("e => e.remove()")
    page.set_input_files("#try-file", files=[{"name": "big.png", "mimeType": "image/png", "buffer": buf.getvalue()}])
    expect(page.locator("#predictions li").first).to_be_visible(timeout=30000)
    check(page.locator("#notice").is_hidden(), "over the 1 MiB body limit: scaled down in the page and tried")
    page.set_input_files("#try-file", files=[{"name": "x.png", "mimeType": "image/png", "buffer": b"not a picture"}])
    expect(page.locator("#notice")).to_be_visible()
    check(len(page.locator("#notice").inner_text()) > 10, "a bad picture shows the server's error: " +
          page.locator("#notice").inner_text())

    # ---- a classification project: label editor, confusion matrix, Try it ----
    page.get_by_role("link", name="Projects").click()
    page.get_by_label("Project name").fill("colours")
    page.get_by_label("Task").select_option("classify")
    page.get_by_role("button", name="Create project").click()
    page.wait_for_url("**/#/p/*/data")
    cid = int(page.url.split("/p/")[1].split("/")[0])
    page.set_input_files("#file-pick", files=[{"name": "colours.zip", "mimeType": "application/zip",
                                               "buffer": make_zip()}])
    expect(page.locator(".uploads .status")).to_contain_text("37 images added", timeout=60000)
    _, lst = api("/api/projects/%d/images?limit=100" % cid)
    wrong = [i for i in lst["images"] if i["source"].endswith("wrong.png")][0]
    page.goto(base + "/#/p/%d/edit/%d" % (cid, wrong["id"]))
    page.get_by_label("Label").select_option("red")
    expect(page.locator("#save-state")).to_have_text("Saved", timeout=10000)
    page.wait_for_timeout(200)
    check(api("/api/projects/%d/images/%d" % (cid, wrong["id"]))[1]["label"] == "red",
          "classification label changed in the editor (saved)")
    page.get_by_role("link", name="Train").click()
    page.get_by_role("button", name="Start training").click()
    expect(page.locator("#job-state")).to_have_text("done", timeout=120000)
    page.locator("#results-link").click()
    expect(page.locator("#confusion")).to_be_visible()
    check(page.locator("#confusion tbody tr").count() == len(CLASS_COLOURS) and "accuracy" in
          page.locator("#eval-summary").inner_text(), "accuracy and a %dx%d confusion matrix" % ((len(CLASS_COLOURS),) * 2))
    shot("08_classify_results")
    page.get_by_role("link", name="Try it").click()
    page.set_input_files("#try-file", files=[{"name": "red.png", "mimeType": "image/png",
                                              "buffer": png_bytes(CLASS_COLOURS["red"], 4242)}])
    expect(page.locator("#predictions li").first).to_be_visible(timeout=30000)
    check(page.locator("#predictions li").first.inner_text().startswith("red"),
          "Try it on a red picture: " + page.locator("#predictions li").first.inner_text())

    # ---- a large file goes through a resumable upload; cancel a job ----
    page.get_by_role("link", name="Data").click()
    patches = []
    page.on("request", lambda r: patches.append(r.url) if r.method == "PATCH" and "/api/uploads/" in r.url else None)
    big = os.urandom(9 << 20)
    page.set_input_files("#file-pick", files=[{"name": "notes.bin", "mimeType": "application/octet-stream",
                                               "buffer": big}])
    expect(page.locator(".uploads li").first.locator(".status")).to_contain_text("0 images added", timeout=60000)
    check(len(patches) == 3, "a 9 MiB file sent as a resumable upload in %d chunks" % len(patches))
    check("ignored" in page.locator(".uploads li").first.locator(".problems").inner_text().lower() or
          "notes.bin" in page.locator(".uploads li").first.locator(".problems").inner_text(),
          "its validation message: " + page.locator(".uploads li").first.locator(".problems").inner_text())
    page.get_by_role("link", name="Train").click()
    page.get_by_text("Advanced settings").click()
    page.get_by_label("Epochs").fill("5000")
    page.get_by_role("button", name="Start training").click()
    expect(page.locator("#job-speed")).not_to_have_text("– images/s", timeout=60000)
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#job-state")).to_have_text("canceled", timeout=60000)
    check(True, "a running job canceled from the page")

    # ---- errors and logout ----
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/#/login")
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill("wrong-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#notice")).to_be_visible()
    check("password" in page.locator("#notice").inner_text().lower(),
          "wrong password: the server's error shown: " + page.locator("#notice").inner_text())
    shot("07_login_error")
    check(not console, "no console errors (CSP violations included): %s" % console[:3])
    check(not bad, "no failed requests besides the provoked ones: %s" % bad[:3])


if __name__ == "__main__":
    sys.exit(main())
