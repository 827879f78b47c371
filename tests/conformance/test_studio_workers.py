"""Remote workers (`kiln worker`) against `kiln studio --workers 0` on loopback:

- an administrator makes a worker token (POST /api/worker-tokens); a user's
  token cannot use the worker endpoints, a worker token cannot use anything
  else (403), and every worker request must name the worker;
- two `kiln worker` processes take three small train jobs: every job runs
  exactly once (attempts 1, one "start" event), both workers take jobs,
  progress reaches the SSE stream like in-process progress, and each job's
  model version has the four artifacts (the int8 model downloads and its
  SHA-256 is the artifact's);
- a longer job: its worker is killed with SIGKILL after a checkpoint was
  uploaded; the job is leased again by the other worker when the lease runs
  out (attempts 2), which resumes from the uploaded checkpoint (the second
  attempt's first epoch is past the checkpointed one; the model's metrics
  say resumed);
- a worker token reads nothing of a job it does not hold: another project's
  queued job, a job held by another worker name, a finished job: 404 on
  every per-job worker endpoint;
- SIGTERM of a worker mid-training: the job checkpoints, goes back to the
  queue and another worker resumes and finishes it;
- a job checkpointed by the studio's in-process worker, the studio killed
  and restarted with --workers 0: a remote worker resumes from that
  checkpoint; and the other way round (a killed remote worker's uploaded
  checkpoint resumed by the studio's in-process worker);
- the Kubernetes manifests in deploy/k8s parse as YAML (when PyYAML is
  installed; otherwise only that check is skipped, and said so).
"""
import glob
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from common import kiln_bin

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_studio_api import Client, follow_events, make_zip, wait_job  # noqa: E402

passed, failures = 0, []
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def check(cond, what):
    global passed
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if cond:
        passed += 1
    else:
        failures.append(what)


class Studio:
    def __init__(self, data, lease=3, workers=0):
        self.proc = subprocess.Popen([kiln_bin(), "studio", "--port", "0", "--data", data, "--workers", str(workers),
                                      "--train-threads", "1", "--lease-seconds", str(lease)],
                                     stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
        line = self.proc.stdout.readline()
        m = re.search(r"http://([\d.]+):(\d+)/", line)
        if not m:
            raise RuntimeError("kiln studio did not print its URL: %r" % line)
        self.host, self.port = m.group(1), int(m.group(2))
        self.url = "http://%s:%d/" % (self.host, self.port)


def start_worker(studio, token, name, work):
    return subprocess.Popen([kiln_bin(), "worker", "--studio", studio.url, "--token", token, "--name", name,
                             "--threads", "1", "--work-dir", work, "--poll-ms", "100", "--verbose"],
                            stderr=sys.stderr)


def worker_client(studio, token, name):
    c = Client(studio)
    c.token = token
    c.worker = name
    return c


def wreq(c, method, path, body=None, headers=None):
    h = dict(headers or {})
    if c.worker:
        h["X-Kiln-Worker"] = c.worker
    return c.request(method, path, body, headers=h)


def main():
    tmp = tempfile.mkdtemp(prefix="kiln-workers-test-")
    studio = Studio(os.path.join(tmp, "data"))
    workers, studios = [], [studio]
    try:
        run(studio, tmp, workers)
        studio.proc.send_signal(signal.SIGTERM)
        check(studio.proc.wait(timeout=60) == 0, "the studio stops cleanly")
        handoff(tmp, workers, studios)
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
        for s in studios:
            if s.proc.poll() is None:
                s.proc.send_signal(signal.SIGTERM)
                s.proc.wait(timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d passed, %d failed" % (passed, len(failures)))
    for f in failures:
        print("FAILED: " + f)
    return 1 if failures else 0


def handoff(tmp, workers, studios):
    """A job checkpointed by the studio's own worker; the studio is killed and
    comes back with --workers 0: a remote worker resumes from that checkpoint."""
    data = os.path.join(tmp, "data2")
    studio = Studio(data, workers=1)
    studios.append(studio)
    Client(studio).request("POST", "/api/setup", {"name": "alice", "password": "alice-secret"})
    a = Client(studio)
    a.login("alice", "alice-secret")
    _, proj = a.request("POST", "/api/projects", {"name": "colours", "task": "classify"})
    a.request("POST", "/api/projects/%d/files" % proj["id"], make_zip(),
              headers={"X-Filename": "colours.zip", "Content-Type": "application/zip"})
    _, wt = a.request("POST", "/api/worker-tokens", {"name": "pool"})
    _, job = a.request("POST", "/api/projects/%d/jobs" % proj["id"],
                       {"kind": "train", "settings": {"preset": "fast", "epochs": 300, "batch": 2, "seed": 7,
                                                      "calib_images": 4}})
    _, ev, _ = follow_events(a, job["id"], until=lambda e: e.get("event") == "epoch" and e.get("epoch", 0) >= 3)
    check(any(e.get("event") == "checkpoint" for e in ev), "in-process worker checkpointed the job")
    studio.proc.kill()
    studio.proc.wait()
    studio = Studio(data, workers=0)
    studios.append(studio)
    a.studio = studio
    a.login("alice", "alice-secret")
    workers.append(start_worker(studio, wt["token"], "w5", os.path.join(tmp, "w5")))
    events, end = job_events(a, job["id"])
    starts = [e for e in events if e.get("event") == "start"]
    second = events[events.index(starts[-1]):] if len(starts) == 2 else []
    epochs2 = [e.get("epoch") for e in second if e.get("event") == "epoch"]
    check(end and end["state"] == "done" and end["attempts"] == 2 and len(starts) == 2
          and starts[1].get("worker", "").endswith("/w5") and epochs2 and epochs2[0] > 1,
          "a remote worker resumed the in-process worker's checkpoint (first epoch %s) and finished"
          % (epochs2[0] if epochs2 else None))

    # and back: a remote worker's uploaded checkpoint resumed by an in-process worker
    _, job = a.request("POST", "/api/projects/%d/jobs" % proj["id"],
                       {"kind": "train", "settings": {"preset": "fast", "epochs": 300, "batch": 2, "seed": 8,
                                                      "calib_images": 4}})
    follow_events(a, job["id"], until=lambda e: e.get("event") == "epoch" and e.get("epoch", 0) >= 3)
    workers[-1].kill()
    workers[-1].wait()
    studio.proc.send_signal(signal.SIGTERM)
    studio.proc.wait(timeout=60)
    studio = Studio(data, workers=1)
    studios.append(studio)
    a.studio = studio
    a.login("alice", "alice-secret")
    events, end = job_events(a, job["id"])
    starts = [e for e in events if e.get("event") == "start"]
    second = events[events.index(starts[-1]):] if len(starts) == 2 else []
    epochs2 = [e.get("epoch") for e in second if e.get("event") == "epoch"]
    model = a.request("GET", "/api/models/%d" % end["model_id"])[1] if end and end.get("model_id") else {}
    check(end and end["state"] == "done" and end["attempts"] == 2 and epochs2 and epochs2[0] > 1
          and model.get("metrics", {}).get("resumed") is True,
          "the studio's worker resumed the remote worker's uploaded checkpoint (first epoch %s) and finished"
          % (epochs2[0] if epochs2 else None))


def job_events(a, job_id):
    _, events, end = follow_events(a, job_id)
    return events, end


def run(studio, tmp, workers):
    anon = Client(studio)
    anon.request("POST", "/api/setup", {"name": "alice", "password": "alice-secret"})
    a = Client(studio)
    a.login("alice", "alice-secret")
    status, proj = a.request("POST", "/api/projects", {"name": "colours", "task": "classify"})
    pid = proj["id"]
    status, up = a.request("POST", "/api/projects/%d/files" % pid, make_zip(),
                           headers={"X-Filename": "colours.zip", "Content-Type": "application/zip"})
    check(status == 201 and up["files"][0]["added"] == 37, "37 images uploaded")

    # ---- tokens and scopes ----
    status, wt = a.request("POST", "/api/worker-tokens", {"name": "pool"})
    check(status == 201 and wt["token"].startswith("kt_") and wt["scope"] == "worker", "admin makes a worker token")
    token = wt["token"]
    status, ut = a.request("POST", "/api/tokens", {"name": "script"})
    user = worker_client(studio, ut["token"], "w-user")
    check(wreq(user, "POST", "/api/worker/lease")[0] == 403, "a user token cannot lease jobs: 403")
    check(wreq(user, "GET", "/api/worker/jobs/1/dataset")[0] == 404, "a user token reads no job's worker data: 404")
    probe = worker_client(studio, token, "probe")
    check(wreq(probe, "GET", "/api/projects")[0] == 403, "a worker token cannot list projects: 403")
    check(wreq(probe, "GET", "/api/projects/%d/images" % pid)[0] == 403, "a worker token cannot list images: 403")
    check(wreq(probe, "GET", "/api/me")[0] == 403, "a worker token cannot use /api/me: 403")
    check(wreq(probe, "POST", "/api/worker-tokens", {"name": "x"})[0] == 403,
          "a worker token cannot make worker tokens: 403")
    nameless = worker_client(studio, token, None)
    check(wreq(nameless, "POST", "/api/worker/lease")[0] == 400, "a worker request without X-Kiln-Worker: 400")
    check(anon.request("POST", "/api/worker/lease")[0] == 401, "unauthenticated lease: 401")
    status, body = wreq(probe, "POST", "/api/worker/lease")
    check(status == 200 and body["job"] is None, "an empty queue leases nothing")

    # ---- two workers, three jobs ----
    for name in ("w1", "w2"):
        workers.append(start_worker(studio, token, name, os.path.join(tmp, name)))
    settings = {"preset": "fast", "epochs": 3, "batch": 4, "calib_images": 4}
    jobs = []
    for seed in range(3):
        status, job = a.request("POST", "/api/projects/%d/jobs" % pid,
                                {"kind": "train", "settings": dict(settings, seed=10 + seed)})
        jobs.append(job["id"])
    ran_by = {}
    for jid in jobs:
        events, end = job_events(a, jid)
        job = wait_job(a, jid, ("done", "failed", "canceled"), timeout=120)
        starts = [e for e in events if e.get("event") == "start"]
        ran_by[jid] = starts[0]["worker"] if starts else None
        check(job["state"] == "done" and job["attempts"] == 1 and len(starts) == 1,
              "job %d done once (state %s, attempts %d, %d starts, by %s)"
              % (jid, job["state"], job["attempts"], len(starts), ran_by[jid]))
        prog = [e["progress"] for e in events if "progress" in e and e.get("event") != "start"]
        check(end and end["state"] == "done" and prog and prog[-1] == 1.0 and prog == sorted(prog),
              "job %d: progress over SSE rises to 1.0 (%d events)" % (jid, len(prog)))
        if job["model_id"]:
            _, m = a.request("GET", "/api/models/%d" % job["model_id"])
            names = sorted(x["name"] for x in m.get("artifacts", []))
            check(names == ["labels.txt", "model_float.tflite", "model_int8.tflite", "report.json"],
                  "job %d: the model has its four artifacts" % jid)
            art = [x for x in m.get("artifacts", []) if x["name"] == "model_int8.tflite"]
            status, raw, _ = a.request("GET", "/api/models/%d/artifacts/model_int8.tflite" % job["model_id"], raw=True)
            check(status == 200 and art and hashlib.sha256(raw).hexdigest() == art[0]["hash"],
                  "job %d: the int8 model downloads intact" % jid)
    names = set(v.rsplit("/", 1)[-1] for v in ran_by.values() if v)
    check(names == {"w1", "w2"}, "both workers took jobs (%s)" % sorted(names))

    # ---- kill -9 of a worker mid-training: the other resumes from the checkpoint ----
    status, long_job = a.request("POST", "/api/projects/%d/jobs" % pid,
                                 {"kind": "train", "settings": {"preset": "fast", "epochs": 300, "batch": 2,
                                                                "seed": 3, "calib_images": 4}})
    lid = long_job["id"]
    _, ev, _ = follow_events(a, lid, until=lambda e: e.get("event") == "epoch" and e.get("epoch", 0) >= 3)
    holder = next((e["worker"] for e in ev if e.get("event") == "start"), "")
    ckpts = [e for e in ev if e.get("event") == "checkpoint"]
    killed_epoch = max([e.get("epoch", 0) for e in ev if e.get("event") == "epoch"] or [0])
    check(holder.rsplit("/", 1)[-1] in ("w1", "w2") and ckpts, "the long job runs on %s and checkpointed" % holder)
    intruder = worker_client(studio, token, "intruder")
    check(wreq(intruder, "GET", "/api/worker/jobs/%d/dataset" % lid)[0] == 404,
          "another worker name cannot read the held job's dataset: 404")
    check(wreq(intruder, "POST", "/api/worker/jobs/%d/heartbeat" % lid)[0] == 404,
          "nor heartbeat it: 404")
    victim = workers[0] if holder.endswith("/w1") else workers[1]
    victim.kill()
    victim.wait()
    t0 = time.time()
    events, end = job_events(a, lid)
    job = wait_job(a, lid, ("done", "failed", "canceled"), timeout=120)
    starts = [e for e in events if e.get("event") == "start"]
    check(job["state"] == "done" and job["attempts"] == 2, "the job finished on its second attempt (state %s, attempts %d)"
          % (job["state"], job["attempts"]))
    check(len(starts) == 2 and starts[1]["worker"] != holder and starts[1]["resumed"] is True,
          "attempt 2 ran on the other worker (%s) and says it resumes" % (starts[1]["worker"] if len(starts) > 1 else None))
    second = events[events.index(starts[-1]):] if len(starts) == 2 else []
    epochs2 = [e.get("epoch") for e in second if e.get("event") == "epoch"]
    check(epochs2 and epochs2[0] > 1 and epochs2[0] >= killed_epoch - 1,
          "attempt 2 resumed from the checkpoint: its first epoch is %s (killed after epoch %d)"
          % (epochs2[0] if epochs2 else None, killed_epoch))
    first1 = next((e["progress"] for e in events if e.get("event") == "epoch"), None)
    first2 = next((e["progress"] for e in second if e.get("event") == "epoch"), None)
    check(first1 is not None and first2 is not None and first2 > first1,
          "attempt 2's progress did not restart from zero (first epoch at %s, attempt 1's at %s)" % (first2, first1))
    if job["model_id"]:
        _, m = a.request("GET", "/api/models/%d" % job["model_id"])
        check(m["metrics"].get("resumed") is True and m["metrics"].get("epochs") == 300,
              "the model's metrics say resumed, 300 epochs (%s)" % m["metrics"])
    print("kill -9 to done: %.1f s" % (time.time() - t0))

    # ---- a worker token reads nothing of jobs it does not hold ----
    for w in workers:
        if w.poll() is None:
            w.send_signal(signal.SIGTERM)
            check(w.wait(timeout=60) == 0, "an idle worker stops on SIGTERM")
    status, p2 = a.request("POST", "/api/projects", {"name": "other", "task": "classify"})
    status, j2 = a.request("POST", "/api/projects/%d/jobs" % p2["id"], {"kind": "train", "settings": {}})
    for jid, what in ((j2["id"], "another project's queued job"), (lid, "a finished job")):
        for method, path in (("GET", "dataset"), ("GET", "dataset/" + "0" * 64 + ".png"), ("GET", "checkpoints"),
                             ("GET", "checkpoints/last.ckpt"), ("PUT", "checkpoints/last.ckpt"),
                             ("PUT", "artifacts/model_int8.tflite"), ("POST", "heartbeat"), ("POST", "events"),
                             ("POST", "complete"), ("POST", "fail")):
            st = wreq(probe, method, "/api/worker/jobs/%d/%s" % (jid, path), {"event": "x"} if method == "POST" else b"x" if method == "PUT" else None,
                      headers={"X-Filename": "x"} if method == "PUT" else None)[0]
            check(st == 404, "worker token, %s: %s %s: 404 (got %d)" % (what, method, path, st))
    check(wreq(probe, "GET", "/api/jobs/%d" % j2["id"])[0] == 403, "a worker token cannot read jobs: 403")
    check(a.request("GET", "/api/jobs/%d" % j2["id"])[1]["state"] == "queued", "the other job is untouched")

    # ---- SIGTERM of a worker mid-training: checkpoint, give back, resume elsewhere ----
    a.request("POST", "/api/jobs/%d/cancel" % j2["id"])
    status, j3 = a.request("POST", "/api/projects/%d/jobs" % pid,
                           {"kind": "train", "settings": {"preset": "fast", "epochs": 300, "batch": 2,
                                                          "seed": 5, "calib_images": 4}})
    w3 = start_worker(studio, token, "w3", os.path.join(tmp, "w3"))
    workers.append(w3)
    follow_events(a, j3["id"], until=lambda e: e.get("event") == "epoch" and e.get("epoch", 0) >= 2)
    w3.send_signal(signal.SIGTERM)
    check(w3.wait(timeout=60) == 0, "a training worker stops cleanly on SIGTERM")
    job = a.request("GET", "/api/jobs/%d" % j3["id"])[1]
    check(job["state"] == "queued" and job["attempts"] == 1, "its job went back to the queue (state %s)" % job["state"])
    workers.append(start_worker(studio, token, "w4", os.path.join(tmp, "w4")))
    events, end = job_events(a, j3["id"])
    starts = [e for e in events if e.get("event") == "start"]
    check(end and end["state"] == "done" and end["attempts"] == 2 and [e["event"] for e in events].count("paused") == 1
          and len(starts) == 2 and starts[1]["worker"].endswith("/w4"),
          "the paused job resumed on another worker and finished (%s)" % (end and end["state"]))
    if end and end.get("model_id"):
        m = a.request("GET", "/api/models/%d" % end["model_id"])[1]
        check(m["metrics"].get("resumed") is True, "and the trainer resumed from the uploaded checkpoint")
    for w in workers:
        if w.poll() is None:
            w.send_signal(signal.SIGTERM)
            w.wait(timeout=60)

    # ---- deploy/k8s manifests ----
    manifests = sorted(glob.glob(os.path.join(ROOT, "deploy", "k8s", "*.yaml")))
    check(len(manifests) >= 2, "deploy/k8s has the studio and worker manifests")
    try:
        import yaml
    except ImportError:
        yaml = None
        print("SKIP (only this check): PyYAML is not installed; the manifests were not parsed")
    if yaml:
        kinds = []
        for path in manifests:
            with open(path) as f:
                kinds += [d["kind"] for d in yaml.safe_load_all(f) if d]
        check({"Deployment", "Service", "PersistentVolumeClaim"} <= set(kinds), "manifests parse: %s" % kinds)


if __name__ == "__main__":
    sys.exit(main())
