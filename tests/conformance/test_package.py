"""kiln package end to end, checked with the tools people use on the result:

1. Reproducible: two builds of the shared SSD and its labels (the second
   one pushing) give byte-identical archives and the same digest; the layer
   tars have mtime 0, uid/gid 0 and sorted entries; gzip headers no time.
2. skopeo inspect (oci-archive:) reads the image: digest, architecture,
   labels (the model's SHA-256, kiln's version), entrypoint `kiln serve`,
   exposed port, user; the config blob has the healthcheck.
3. umoci unpack --rootless gives a root filesystem whose /usr/bin/kiln,
   with only the libraries and loader in the image (chroot in a user
   namespace: works without root), runs the image's entrypoint: the server
   answers /v2/health/ready and :detect on the shared photo exactly as the
   host's `kiln detect` does, and the image's `kiln health` probe agrees.
4. Push to a real registry (Debian's docker-registry on loopback, started
   here) and pull back with skopeo copy: the same manifest digest; again
   through basic auth (htpasswd, bcrypt) and through a bearer token server
   (a small proxy here in front of the registry).
5. Bad input: missing or corrupt model, bad name or architecture, an
   unreachable registry, a registry answering 401 without or with wrong
   credentials: clear errors, non-zero exit, no archive or temporary left.
"""
import base64
import gzip
import hashlib
import http.client
import http.server
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request

from common import kiln_bin, models_dir

failures = []
MODEL = os.path.join(models_dir(), "ssd_mobilenet_v2_oidv4_fp16.tflite")
LABELS = os.path.join(models_dir(), "oidv4_labels.txt")
PHOTO = os.path.join(models_dir(), "..", "images", "astronaut.png")
TOOLS = ["skopeo", "umoci", "docker-registry", "htpasswd", "unshare", "chroot"]
USER, PASSWORD = "robot", "s3cret-pass"


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def kiln(*args, env=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("KILN_REGISTRY_") and k != "SOURCE_DATE_EPOCH"}
    e.update(env or {})
    return subprocess.run([kiln_bin(), *args], capture_output=True, text=True, env=e)


def run(*args):
    return subprocess.run(list(args), capture_output=True, text=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, ok=(200,), seconds=30):
    end = time.time() + seconds
    while time.time() < end:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status in ok:
                    return True
        except urllib.error.HTTPError as e:
            if e.code in ok:
                return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def package(out, *extra, env=None):
    return kiln("package", "--model", MODEL, "--labels", LABELS, "--name", "ssd", "--out", out,
                "--gzip-level", "1", *extra, env=env)


def archive_json(path, name):
    with tarfile.open(path) as t:
        return json.load(t.extractfile(name))


def blob(tar, digest):
    return tar.extractfile("blobs/sha256/" + digest.split(":")[1]).read()


def check_layers(path, what):
    """Every layer: gzip mtime 0, entries sorted, mtime 0, uid/gid 0."""
    with tarfile.open(path) as t:
        index = json.load(t.extractfile("index.json"))
        manifest = json.loads(blob(t, index["manifests"][0]["digest"]))
        good = True
        for layer in manifest["layers"]:
            data = blob(t, layer["digest"])
            good &= hashlib.sha256(data).hexdigest() == layer["digest"].split(":")[1]
            good &= data[:2] == b"\x1f\x8b" and data[4:8] == b"\0\0\0\0" and not data[3] & 0x08
            with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as lt:
                members = lt.getmembers()
                names = [m.name for m in members]
                good &= names == sorted(names) and len(names) > 0
                good &= all(m.mtime == 0 and m.uid == 0 and m.gid == 0 for m in members)
        check(good, f"{what}: layers: digests match, gzip without time, tar entries sorted, mtime 0, uid/gid 0")
        return manifest


def start_registry(tmp, name, auth=None):
    port = free_port()
    storage = os.path.join(tmp, name + "-storage")
    lines = ["version: 0.1", "log:", "  level: error", "  accesslog:", "    disabled: true", "storage:",
             "  filesystem:", f"    rootdirectory: {storage}", "http:", f"  addr: 127.0.0.1:{port}",
             "  secret: kiln-test-secret"]
    if auth:
        lines += ["auth:", "  htpasswd:", "    realm: kiln-test", f"    path: {auth}"]
    config = os.path.join(tmp, name + ".yml")
    with open(config, "w") as f:
        f.write("\n".join(lines) + "\n")
    log = open(os.path.join(tmp, name + ".log"), "w")
    proc = subprocess.Popen(["docker-registry", "serve", config], stdout=log, stderr=subprocess.STDOUT)
    ready = wait_http(f"http://127.0.0.1:{port}/v2/", ok=(200, 401))
    check(ready, f"docker-registry ({name}) listens on 127.0.0.1:{port}")
    return proc, port


class TokenProxy(http.server.BaseHTTPRequestHandler):
    """Bearer auth in front of a registry: /token hands a token for basic
    credentials; every other request needs it and is forwarded."""
    protocol_version = "HTTP/1.1"
    backend = None
    token = "kiln-test-token-7f3a"
    scopes = []

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        if self.path.startswith("/token"):
            expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            if self.headers.get("Authorization") != expected:
                return self.reply(401, b'{"details":"bad credentials"}')
            TokenProxy.scopes.append(self.path)
            return self.reply(200, json.dumps({"token": self.token}).encode(),
                              [("Content-Type", "application/json")])
        if self.headers.get("Authorization") != "Bearer " + self.token:
            host = self.headers.get("Host")
            challenge = f'Bearer realm="http://{host}/token",service="kiln-test"'
            return self.reply(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"token needed"}]}',
                              [("WWW-Authenticate", challenge), ("Content-Type", "application/json")])
        conn = http.client.HTTPConnection("127.0.0.1", self.backend, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("authorization", "content-length")}
        conn.request(self.command, self.path, body=body if n or self.command in ("PUT", "POST", "PATCH") else None,
                     headers=headers)
        r = conn.getresponse()
        data = r.read()
        keep = [(k, v) for k, v in r.getheaders() if k.lower() not in ("content-length", "transfer-encoding", "connection")]
        conn.close()
        self.reply(r.status, data, keep)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any


def start_server(rootfs, args, tmp):
    """The image's entrypoint in a chroot of the unpacked rootfs, in a user
    namespace (no root needed) with its own /proc, as a container has."""
    os.makedirs(os.path.join(rootfs, "proc"), exist_ok=True)
    log = open(os.path.join(tmp, "serve.log"), "w")
    cmd = ["unshare", "-r", "-m", "-p", "-f", "--kill-child", "--mount-proc=" + os.path.join(rootfs, "proc"),
           "chroot", rootfs, *args]
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)


def stop_server(unshare):
    """SIGTERM to the server (unshare ignores it, and forwards nothing); it
    must exit by itself; unshare follows."""
    try:
        with open(f"/proc/{unshare.pid}/task/{unshare.pid}/children") as f:
            children = [int(p) for p in f.read().split()]
    except OSError:
        children = []
    for pid in children:
        os.kill(pid, signal.SIGTERM)
    try:
        rc = unshare.wait(timeout=30)
    except subprocess.TimeoutExpired:
        unshare.kill()  # --kill-child: the server gets SIGKILL with it
        rc = unshare.wait()
    check(bool(children) and rc == 0, f"the server exits 0 on SIGTERM (exit {rc})")


def in_image(rootfs, *args):
    return run("unshare", "-r", "-m", "-p", "-f", "--kill-child", "--mount-proc=" + os.path.join(rootfs, "proc"),
               "chroot", rootfs, *args)


def post_image(url, path):
    with open(path, "rb") as f:
        req = urllib.request.Request(url, data=f.read(), headers={"Content-Type": "image/png"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)


def same_detections(a, b):
    da, db = a.get("detections", []), b.get("detections", [])
    if len(da) != len(db) or not da:
        return False
    for x, y in zip(da, db):
        if x["label"] != y["label"] or x["class_id"] != y["class_id"] or abs(x["score"] - y["score"]) > 1e-4:
            return False
        if any(abs(x["box"][k] - y["box"][k]) > 1e-2 for k in ("xmin", "ymin", "xmax", "ymax")):
            return False
    return True


def test_build_and_inspect(tmp):
    a = os.path.join(tmp, "a.tar")
    t0 = time.time()
    r = package(a)
    seconds = time.time() - t0
    check(r.returncode == 0, "kiln package builds the image: " + r.stderr.strip()[:300])
    if r.returncode:
        return None
    digest = r.stdout.strip()
    print(f"     build: {seconds:.1f} s, {os.path.getsize(a) / 1e6:.1f} MB, {digest}")
    check(digest.startswith("sha256:"), "prints the image digest")
    manifest = check_layers(a, "archive")
    check(len(manifest["layers"]) == 4, "four layers: libraries, kiln, model, labels")

    r = run("skopeo", "inspect", "oci-archive:" + a)
    check(r.returncode == 0, "skopeo inspect reads the archive: " + r.stderr.strip()[:200])
    info = json.loads(r.stdout) if r.returncode == 0 else {}
    with open(MODEL, "rb") as f:
        model_sha = hashlib.sha256(f.read()).hexdigest()
    version = kiln("--version").stdout.split()[-1]
    labels = info.get("Labels") or {}
    check(info.get("Digest") == digest, "skopeo's digest is the one kiln printed")
    check(info.get("Architecture") == "amd64" and info.get("Os") == "linux", "linux/amd64")
    check(labels.get("kiln.model.sha256") == model_sha, "label kiln.model.sha256 is the model's SHA-256")
    check(labels.get("kiln.version") == version, f"label kiln.version is {version}")
    r = run("skopeo", "inspect", "--config", "oci-archive:" + a)
    cfg = json.loads(r.stdout).get("config", {}) if r.returncode == 0 else {}
    entry = ["/usr/bin/kiln", "serve", "--model", "ssd=/models/ssd.tflite,labels=/models/ssd.labels.txt",
             "--host", "0.0.0.0", "--port", "8500"]
    check(cfg.get("Entrypoint") == entry, "entrypoint: " + json.dumps(cfg.get("Entrypoint")))
    check("8500/tcp" in (cfg.get("ExposedPorts") or {}), "exposes 8500/tcp")
    check(cfg.get("User") == "65532:65532", "runs as user 65532")
    with tarfile.open(a) as t:
        raw = json.loads(blob(t, manifest["config"]["digest"]))
    health = raw["config"].get("Healthcheck", {})
    check(health.get("Test") == ["CMD", "/usr/bin/kiln", "health", "http://127.0.0.1:8500/v2/health/ready"],
          "healthcheck runs kiln health on /v2/health/ready")
    check("created" not in raw and all("created" not in h for h in raw.get("history", [])),
          "no timestamps in the config")
    docker = archive_json(a, "manifest.json")
    check(docker[0]["RepoTags"] == ["kiln/ssd:latest"] and len(docker[0]["Layers"]) == 4,
          "Docker's manifest.json for docker load")
    return a, digest


def test_run_unpacked(tmp, archive):
    layout, bundle = os.path.join(tmp, "layout"), os.path.join(tmp, "bundle")
    with tarfile.open(archive) as t:
        t.extractall(layout)
    r = run("umoci", "unpack", "--rootless", "--image", layout + ":latest", bundle)
    shutil.rmtree(layout)
    check(r.returncode == 0, "umoci unpack --rootless: " + r.stderr.strip()[:300])
    if r.returncode:
        return
    rootfs = os.path.join(bundle, "rootfs")
    with open(MODEL, "rb") as f1, open(os.path.join(rootfs, "models", "ssd.tflite"), "rb") as f2:
        check(f1.read() == f2.read(), "/models/ssd.tflite is the model")
    with open(os.path.join(bundle, "config.json")) as f:
        process = json.load(f)["process"]
    check(process["user"]["uid"] == 65532, "umoci's runtime config runs as uid 65532")
    port = free_port()
    # As `docker run IMAGE --host 127.0.0.1 --port P`: arguments after the image's.
    server = start_server(rootfs, process["args"] + ["--host", "127.0.0.1", "--port", str(port)], tmp)
    try:
        base = f"http://127.0.0.1:{port}"
        ready = wait_http(base + "/v2/health/ready", seconds=60)
        with open(os.path.join(tmp, "serve.log")) as f:
            log = f.read()
        check(ready, "the unpacked image's kiln serve answers /v2/health/ready: " + log.strip()[-300:])
        if not ready:
            return
        got = post_image(base + "/v1/models/ssd:detect", PHOTO)
        r = kiln("detect", MODEL, PHOTO, "--labels", LABELS, "--json")
        want = json.loads(r.stdout) if r.returncode == 0 else {}
        print("     image :detect ->", [(d["label"], round(d["score"], 3)) for d in got.get("detections", [])])
        check(same_detections(got, want), ":detect in the image answers what the host's kiln detect answers")
        r = in_image(rootfs, "/usr/bin/kiln", "health", base + "/v2/health/ready")
        check(r.returncode == 0, "the image's healthcheck probe (kiln health) passes: " + r.stderr.strip())
        r = in_image(rootfs, "/usr/bin/kiln", "health", f"http://127.0.0.1:{free_port()}/v2/health/ready")
        check(r.returncode == 1 and "kiln health" in r.stderr, "kiln health fails on a closed port: " + r.stderr.strip())
    finally:
        stop_server(server)
        shutil.rmtree(bundle, ignore_errors=True)


def pull_digest(tmp, ref, name, creds=None):
    out = os.path.join(tmp, name + ".tar")
    args = ["skopeo", "copy", "-q", "--src-tls-verify=false"]
    if creds:
        args += ["--src-creds", creds]
    r = run(*args, "docker://" + ref, "oci-archive:" + out)
    check(r.returncode == 0, f"skopeo copy pulls {ref}: " + r.stderr.strip()[:300])
    if r.returncode:
        return None
    r = run("skopeo", "inspect", "oci-archive:" + out)
    os.unlink(out)
    return json.loads(r.stdout)["Digest"] if r.returncode == 0 else None


def test_registries(tmp, archive, digest):
    procs = []
    try:
        reg, port = start_registry(tmp, "open")
        procs.append(reg)
        ref = f"127.0.0.1:{port}/kiln/ssd:v1"
        out = os.path.join(tmp, "push.tar")
        t0 = time.time()
        r = package(out, "--push", ref, "--insecure")
        print(f"     build + push: {time.time() - t0:.1f} s; {r.stderr.strip().splitlines()[-1] if r.stderr else ''}")
        check(r.returncode == 0 and r.stdout.split() == [digest, f"{ref}@{digest}"],
              "a second build, pushed to docker-registry, has the same digest: " + r.stderr.strip()[-300:])
        if r.returncode == 0:
            with open(archive, "rb") as fa, open(out, "rb") as fb:
                check(fa.read() == fb.read(), "the two builds' archives are byte-identical")
        check(pull_digest(tmp, ref, "pulled") == digest, "skopeo pulls it back with the same digest")

        htpasswd = os.path.join(tmp, "htpasswd")
        r = run("htpasswd", "-Bbc", htpasswd, USER, PASSWORD)
        check(r.returncode == 0, "htpasswd -B writes a bcrypt password file")
        auth_reg, auth_port = start_registry(tmp, "basic", auth=htpasswd)
        procs.append(auth_reg)
        ref = f"127.0.0.1:{auth_port}/kiln/ssd:v2"
        r = package(out, "--push", ref, "--insecure")
        check(r.returncode == 1 and "requires authentication" in r.stderr and "KILN_REGISTRY_USER" in r.stderr,
              "401 without credentials: " + r.stderr.strip())
        r = package(out, "--push", ref, "--insecure", env={"KILN_REGISTRY_USER": USER, "KILN_REGISTRY_PASSWORD": "wrong"})
        check(r.returncode == 1 and "refused the credentials" in r.stderr, "wrong password: " + r.stderr.strip())
        creds = {"KILN_REGISTRY_USER": USER, "KILN_REGISTRY_PASSWORD": PASSWORD}
        r = package(out, "--push", ref, "--insecure", env=creds)
        check(r.returncode == 0 and r.stdout.split()[-1] == f"{ref}@{digest}",
              "push with basic auth: " + r.stderr.strip()[-200:])
        check(pull_digest(tmp, ref, "pulled-basic", f"{USER}:{PASSWORD}") == digest,
              "skopeo pulls it back through basic auth with the same digest")

        proxy_port = free_port()
        TokenProxy.backend = port
        proxy = http.server.ThreadingHTTPServer(("127.0.0.1", proxy_port), TokenProxy)
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        try:
            ref = f"127.0.0.1:{proxy_port}/kiln/ssd:v3"
            r = package(out, "--push", ref, "--insecure")
            check(r.returncode == 1 and "requires authentication (Bearer" in r.stderr,
                  "bearer challenge without credentials: " + r.stderr.strip())
            r = package(out, "--push", ref, "--insecure", env=creds)
            check(r.returncode == 0 and r.stdout.split()[-1] == f"{ref}@{digest}",
                  "push through a bearer token server: " + r.stderr.strip()[-200:])
            check("0 blobs uploaded" in r.stderr and "5 already there" in r.stderr,
                  "its registry had every blob (HEAD), so none was uploaded again")
            check(any("scope=repository%3Akiln%2Fssd%3Apull%2Cpush" in s for s in TokenProxy.scopes),
                  "the token was asked for repository:kiln/ssd:pull,push")
            check(pull_digest(tmp, f"127.0.0.1:{port}/kiln/ssd:v3", "pulled-bearer") == digest,
                  "the registry behind the token server has it with the same digest")
        finally:
            proxy.shutdown()

        r = package(out, "--push", f"127.0.0.1:{free_port()}/kiln/ssd:v1", "--insecure")
        check(r.returncode == 1 and "unreachable" in r.stderr, "unreachable registry: " + r.stderr.strip())
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=30)


def test_bad_inputs(tmp):
    bad_dir = os.path.join(tmp, "bad")
    os.makedirs(bad_dir)
    out = os.path.join(bad_dir, "x.tar")
    corrupt = os.path.join(bad_dir, "corrupt.tflite")
    with open(MODEL, "rb") as f:
        data = f.read()
    with open(corrupt, "wb") as f:
        f.write(data[: len(data) // 3])
    cases = [
        (["--model", os.path.join(tmp, "missing.tflite"), "--out", out], "missing.tflite"),
        (["--model", corrupt, "--out", out], "corrupt.tflite"),
        (["--model", MODEL, "--labels", os.path.join(tmp, "nolabels.txt"), "--out", out], "nolabels.txt"),
        (["--model", MODEL, "--name", "Bad/Name", "--out", out], "name 'Bad/Name'"),
        (["--model", MODEL, "--arch", "riscv64", "--out", out], "riscv64"),
        (["--model", MODEL, "--arch", "amd64,arm64", "--out", out], "--arch arm64: not supported yet"),
        (["--model", MODEL, "--out", os.path.join(tmp, "no", "such", "dir", "x.tar")], "cannot create"),
        (["--model", MODEL, "--out", out, "--push", "not-a-reference", "--insecure"], "not-a-reference"),
    ]
    for args, needle in cases:
        r = kiln("package", *args)
        check(r.returncode == 1 and needle in r.stderr, f"{needle}: exit 1: {r.stderr.strip()}")
    r = kiln("package", "--model", MODEL)
    check(r.returncode == 2 and "--out" in r.stderr, "no --out: usage error")
    check(os.listdir(bad_dir) == ["corrupt.tflite"], "nothing written by failed runs: " + str(os.listdir(bad_dir)))


def main():
    missing = [t for t in TOOLS if not shutil.which(t)]
    if missing:
        print(f"FAIL: missing {' '.join(missing)} (scripts/setup --test installs them)")
        return 1
    with tempfile.TemporaryDirectory(prefix="kiln-package-") as tmp:
        test_bad_inputs(tmp)
        built = test_build_and_inspect(tmp)
        if built:
            archive, digest = built
            test_run_unpacked(tmp, archive)
            test_registries(tmp, archive, digest)
    print(f"{len(failures)} failed" if failures else "all passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
