// api.js: the studio's REST API (docs/api.md) as small async functions.
// Every failure throws an ApiError carrying the server's {"error": ...} text.

let csrf = null;

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function setCsrf(token) { csrf = token || null; }

async function errorOf(resp) {
  let msg = resp.status + " " + resp.statusText;
  try {
    const j = await resp.json();
    if (j && j.error) msg = j.error;
  } catch (_) { /* not JSON: keep the status line */ }
  return new ApiError(resp.status, msg);
}

export async function request(method, path, body, headers) {
  const h = Object.assign({}, headers || {});
  if (method !== "GET" && method !== "HEAD" && csrf) h["X-CSRF-Token"] = csrf;
  let data = body;
  if (body !== undefined && !(body instanceof Blob) && !(body instanceof ArrayBuffer)) {
    h["Content-Type"] = "application/json";
    data = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, { method, headers: h, body: data, credentials: "same-origin" });
  } catch (e) {
    throw new ApiError(0, "cannot reach the studio: " + e.message);
  }
  if (!resp.ok) throw await errorOf(resp);
  const type = resp.headers.get("Content-Type") || "";
  return type.startsWith("application/json") ? resp.json() : resp.blob();
}

export const get = (p) => request("GET", p);
export const post = (p, b) => request("POST", p, b === undefined ? {} : b);
export const put = (p, b) => request("PUT", p, b);
export const patch = (p, b) => request("PATCH", p, b);

// Uploads one file as a raw body with XMLHttpRequest (for its progress
// events). onProgress(fraction). Resolves to the file's result.
export function uploadFile(projectId, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/projects/" + projectId + "/files");
    xhr.setRequestHeader("X-Filename", encodeURIComponent(file.webkitRelativePath || file.name));
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    if (csrf) xhr.setRequestHeader("X-CSRF-Token", csrf);
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
    xhr.onload = () => {
      let j = null;
      try { j = JSON.parse(xhr.responseText); } catch (_) { /* handled below */ }
      if (xhr.status === 201 && j && j.files) resolve(j.files[0]);
      else reject(new ApiError(xhr.status, (j && j.error) || ("upload failed: HTTP " + xhr.status)));
    };
    xhr.onerror = () => reject(new ApiError(0, "upload of " + file.name + " failed: connection lost"));
    xhr.send(file);
  });
}

const CHUNK = 4 << 20;

// Large files go through a resumable upload (POST .../uploads, PATCH chunks);
// a broken chunk is retried from the offset the server reports (HEAD).
export async function uploadResumable(projectId, file, onProgress) {
  const up = await post("/api/projects/" + projectId + "/uploads",
                        { name: file.webkitRelativePath || file.name, length: file.size });
  let offset = up.offset || 0;
  let tries = 0;
  for (;;) {
    const end = Math.min(offset + CHUNK, file.size);
    let resp;
    try {
      resp = await fetch(up.url, {
        method: "PATCH", body: file.slice(offset, end), credentials: "same-origin",
        headers: { "Upload-Offset": String(offset), "Content-Type": "application/offset+octet-stream",
                   "X-CSRF-Token": csrf || "" } });
    } catch (e) {
      resp = null;
    }
    if (resp && resp.ok) {
      const j = await resp.json();
      offset = j.offset;
      onProgress(offset / file.size);
      if (j.complete) return j.file;
      tries = 0;
      continue;
    }
    if (resp && resp.status !== 409) throw await errorOf(resp);
    if (++tries > 5) throw new ApiError(0, "upload of " + file.name + " keeps failing");
    const head = await fetch(up.url, { method: "HEAD", credentials: "same-origin" });
    offset = parseInt(head.headers.get("Upload-Offset") || "0", 10);
  }
}
