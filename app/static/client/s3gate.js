// s3gate browser client: a dependency-free ES module, served by the service at /client/s3gate.js
// (types: /client/s3gate.d.ts). It talks to the s3gate API for plans and presigned URLs, and
// sends the bytes straight to S3 with exactly the headers the service signed.
//
//   import { createClient } from "https://api.example.com/client/s3gate.js";
//   const s3gate = createClient({ token: () => myAuth.accessToken() });
//   const file = await s3gate.upload(input.files[0], { onProgress: (p) => bar.value = p.fraction });
//
// Uploads use XMLHttpRequest, not fetch(): only XHR reports upload progress in every browser.

const MiB = 1024 * 1024;
const DEFAULTS = Object.freeze({
  concurrency: 4, // parts in flight at once
  retries: 5, // attempts per request on network errors, 5xx, 429 and expired URLs
  partBatch: 16, // part URLs asked for per POST /uploads/{id}/parts
  checksumMaxBytes: 64 * MiB, // "auto" hashes files up to this size (SHA-256 needs the bytes in memory)
  completionWait: 20, // seconds `complete` asks the service to hold its answer (0: not asked)
  verifyTimeoutMs: 10 * 60_000, // how long upload() waits for a background verification
});
// A part URL is asked for again when less than this is left of its life.
const URL_REFRESH_MARGIN_MS = 30_000;
// Resume records live as long as the service honours an Idempotency-Key.
const RESUME_RECORD_MAX_AGE_MS = 24 * 3600 * 1000;
const RESUME_PREFIX = "s3gate.upload.v1:";
// Polls of a file the service verifies in the background: doubling, capped, with jitter so that
// pages that completed together do not poll together.
const POLL_FIRST_MS = 500;
const POLL_MAX_MS = 5000;

/** An API problem (`code` is the problem+json code), or a client-side failure. */
export class S3gateError extends Error {
  constructor(
    message,
    { code, status = 0, problem = null, s3Code = null, retryAfter = null } = {},
  ) {
    super(message);
    this.name = "S3gateError";
    this.code = code;
    this.status = status;
    this.problem = problem;
    this.s3Code = s3Code;
    this.retryAfter = retryAfter;
  }
}

/** The API root the module was served from (`.../client/s3gate.js` -> `.../`). */
export const defaultBaseUrl = new URL("../", import.meta.url).href;

export function createClient(options = {}) {
  return new S3gateClient(options);
}

export class S3gateClient {
  #baseUrl;
  #token;
  #options;
  #settings = null;

  constructor({ baseUrl = defaultBaseUrl, token = null, ...options } = {}) {
    this.#baseUrl = baseUrl.endsWith("/") ? baseUrl : `${baseUrl}/`;
    this.#token = token;
    this.#options = { ...DEFAULTS, ...options };
  }

  /** Upload a File or Blob; resolves to the File resource once the service verified it. */
  async upload(file, options = {}) {
    const opts = withinSettings(
      { ...this.#options, ...options },
      await this.#admitted(file, { ...this.#options, ...options }),
    );
    const signal = opts.signal ?? null;
    const progress = new Progress(file.size, opts.onProgress);
    const body = await this.#declaration(file, opts);
    const resume =
      opts.resume === false ? null : new ResumeRecord(this.#baseUrl, file, body, opts.resumeKey);
    let created = await this.#createOrResume(body, resume, opts);
    if (created.finished) {
      resume?.forget();
      progress.finish();
      return created.finished;
    }
    notify(opts.onFile, created.file);

    if (created.upload.method === "MULTIPART") {
      await this.#sendParts(file, created, progress, opts);
    } else if (created.upload.method === "PUT") {
      // A fresh URL comes from replaying the create with the same Idempotency-Key.
      const refresh = async () =>
        (created = await this.#create(created.body, created.key, opts)).upload;
      await sendWithRetries(created.upload, file, refresh, (n) => progress.set(0, n), opts);
    } else {
      throw new S3gateError(`unexpected upload method ${created.upload.method}`, {
        code: "unsupported_upload",
      });
    }
    abortIfNeeded(signal);
    const done = await this.#complete(created.file.id, { ...opts, signal });
    resume?.forget();
    progress.finish();
    return done;
  }

  /** A short-lived GET URL for an available file: `{url, method, expires_at}`. */
  download(id, { disposition = "attachment", ...options } = {}) {
    const query = new URLSearchParams({ disposition });
    return this.#api("GET", `downloads/${encodeURIComponent(id)}?${query}`, options);
  }

  /**
   * One page of the caller's files, newest first: `{items, next_cursor}`. `shared: true`: the
   * files other owners shared with the caller instead.
   */
  list({ limit = 50, cursor = null, owner = null, shared = false, ...options } = {}) {
    const query = new URLSearchParams({ limit: String(limit) });
    if (cursor) query.set("cursor", cursor);
    if (owner) query.set("owner", owner);
    if (shared) query.set("shared", "true");
    return this.#api("GET", `files?${query}`, options);
  }

  /**
   * What the deployment accepts: `max_file_size`, `allowed_content_types`, `multipart_threshold`,
   * `part_size`, the URL TTLs, `form_uploads`, the caller's quotas (`GET /uploads/settings`).
   */
  uploadSettings({ fresh = false, ...options } = {}) {
    // Asked once per client (again after a failure, or with `fresh: true`).
    if (fresh || !this.#settings) {
      this.#settings = this.#api("GET", "uploads/settings", options);
      this.#settings.catch(() => {
        this.#settings = null;
      });
    }
    return this.#settings;
  }

  /**
   * The published settings upload() works within, or null from a service without them (it
   * decides at create). Refuses, with the service's own code, a file it would refuse: before
   * the file is hashed, and before anything is declared.
   */
  async #admitted(file, opts) {
    let settings;
    try {
      settings = await this.uploadSettings({ signal: opts.signal, retries: opts.retries });
    } catch (error) {
      if (error?.status === 404 || error?.status === 405) return null;
      throw error;
    }
    if (file.size > settings.max_file_size) {
      throw new S3gateError(
        `${file.size} bytes; this service accepts up to ${settings.max_file_size}`,
        { code: "file_too_large", status: 413 },
      );
    }
    const type = essence(opts.contentType || file.type || "application/octet-stream");
    if (!typeAllowed(type, settings.allowed_content_types)) {
      throw new S3gateError(`${type} is not among ${settings.allowed_content_types.join(", ")}`, {
        code: "content_type_not_allowed",
        status: 415,
      });
    }
    return settings;
  }

  getFile(id, options = {}) {
    return this.#api("GET", filePath(id), options);
  }

  /** Delete an uploaded file (its object and its listing). */
  deleteFile(id, options = {}) {
    return this.#api("DELETE", filePath(id), options);
  }

  /**
   * Share a file with a subject (a token's `sub`) or a group: the Grant. Granting the same
   * grantee again replaces its permission and expiry. The owner or an admin only.
   */
  share(id, { subject, group, permission = "read", expiresAt = null, ...options } = {}) {
    const body = { permission };
    if (subject != null) body.subject = subject;
    if (group != null) body.group = group;
    if (expiresAt != null) body.expires_at = timestamp(expiresAt);
    return this.#api("POST", filePath(id, "grants"), { ...options, body });
  }

  /** The file's grants, expired ones too (`active` false) until the reaper prunes them. */
  grants(id, options = {}) {
    return this.#items("GET", filePath(id, "grants"), options);
  }

  /** Revoke a grant; the grantee's next request is refused. */
  revokeGrant(id, grantId, options = {}) {
    return this.#api("DELETE", filePath(id, "grants", grantId), options);
  }

  /**
   * A share link to an available file: the link with its `token` and `url` (`/s/{token}`),
   * which only this answer holds. Anyone with the URL downloads the file while it is live.
   */
  createLink(id, { expiresIn, maxDownloads = null, ...options } = {}) {
    const body = { expires_in: expiresIn };
    if (maxDownloads != null) body.max_downloads = maxDownloads;
    return this.#api("POST", filePath(id, "links"), { ...options, body });
  }

  /** The file's share links, never their tokens. */
  links(id, options = {}) {
    return this.#items("GET", filePath(id, "links"), options);
  }

  /** Revoke a share link: its next use answers 404. */
  revokeLink(id, linkId, options = {}) {
    return this.#api("DELETE", filePath(id, "links", linkId), options);
  }

  /**
   * GET URLs for up to 100 files in one call, in the order of `ids`: each item has `url`,
   * `method` and `expires_at`, or the `problem` a single download would have answered.
   */
  downloadMany(ids, { disposition = "attachment", ...options } = {}) {
    const body = { ids: Array.from(ids), disposition };
    return this.#items("POST", "downloads", { ...options, body });
  }

  /** One page of the URLs issued for the file, newest first: `{items, next_cursor}`. */
  accessHistory(id, { limit = 100, cursor = null, ...options } = {}) {
    const query = new URLSearchParams({ limit: String(limit) });
    if (cursor) query.set("cursor", cursor);
    return this.#api("GET", `${filePath(id, "access")}?${query}`, options);
  }

  // The steps upload() takes, for widgets that send the bytes themselves (@uppy/aws-s3 through
  // /client/uppy.js): each one API call, retried as every call is.

  /** `POST /uploads` (replayed by the same `idempotencyKey`): `{file, upload}`. */
  createUpload(declaration, { idempotencyKey = null, ...options } = {}) {
    const headers = idempotencyKey ? { "Idempotency-Key": idempotencyKey } : {};
    return this.#api("POST", "uploads", {
      ...this.#options,
      ...options,
      body: declaration,
      headers,
    });
  }

  /** Part URLs, up to 1000 per call: `[{part_number, url, headers, expires_at}]`. */
  async partUrls(id, partNumbers, options = {}) {
    const answer = await this.#api("POST", `uploads/${encodeURIComponent(id)}/parts`, {
      ...this.#options,
      ...options,
      body: { part_numbers: Array.from(partNumbers) },
    });
    return answer.parts;
  }

  /** The parts the store holds: `{part_size, part_count, parts: [{part_number, size}]}`. */
  storedParts(id, options = {}) {
    return this.#api("GET", `uploads/${encodeURIComponent(id)}/parts`, {
      ...this.#options,
      ...options,
    });
  }

  /** `complete`, then the verdict of a background verification: the File once available. */
  complete(id, options = {}) {
    return this.#complete(encodeURIComponent(id), { ...this.#options, ...options });
  }

  /** Abandon a pending upload: the service aborts it and the file disappears. */
  async abandon(id, options = {}) {
    await this.#api("DELETE", `uploads/${encodeURIComponent(id)}`, options);
    ResumeRecord.forgetId(this.#baseUrl, id);
  }

  async #declaration(file, opts) {
    const body = {
      filename: opts.filename ?? file.name ?? "upload",
      content_type: opts.contentType || file.type || "application/octet-stream",
      size: file.size,
    };
    const hash =
      opts.checksum === true ||
      (opts.checksum !== false && file.size <= opts.checksumMaxBytes && globalThis.crypto?.subtle);
    if (hash) body.checksum_sha256 = await sha256Base64(file);
    if (opts.multipart) body.multipart = true;
    return body;
  }

  /** Replay a saved create (same key, same body: same file, fresh plan) or make a new one. */
  async #createOrResume(body, resume, opts) {
    const saved = resume?.load();
    if (saved) {
      try {
        return await this.#create(saved.body, saved.key, opts);
      } catch (error) {
        if (!isFinal(error)) throw error;
        const finished = await this.#earlier(saved, error, resume, opts);
        if (finished) return { finished };
        // Expired, rejected, deleted or refused since: that upload is over, start a new one.
        resume.forget();
      }
    }
    const key = randomId();
    resume?.save(key, null); // saved before the call: a lost answer is replayed, not duplicated
    try {
      const created = await this.#create(body, key, opts);
      resume?.save(key, created.file.id);
      return created;
    } catch (error) {
      if (isFinal(error)) resume?.forget(); // refused: nothing to resume
      throw error;
    }
  }

  /**
   * The saved upload's file when it is past pending yet not over: available (a page completed
   * it and was closed before it forgot the record), or verifying, then waited for. Else null.
   */
  async #earlier(saved, error, resume, opts) {
    if (error.code !== "not_pending" || !saved.id) return null;
    let file;
    try {
      file = await this.getFile(saved.id, opts);
    } catch (lookup) {
      if (isFinal(lookup)) return null; // deleted since
      throw lookup;
    }
    if (file.status === "available") return file;
    if (file.status !== "verifying") return null;
    try {
      return await this.#verdict(file, Date.now() + opts.verifyTimeoutMs, opts);
    } catch (verdict) {
      // Rejected or expired meanwhile: nothing left to wait for, nor to resume.
      if (["upload_rejected", "upload_expired"].includes(verdict?.code)) resume.forget();
      throw verdict;
    }
  }

  /** `complete`, then the verdict of a background verification: the File once available. */
  async #complete(id, opts) {
    const deadline = Date.now() + opts.verifyTimeoutMs;
    // RFC 7240: the service may hold its answer until the verification ends (up to its cap),
    // which saves the polls. Cross-origin, its CORS must allow the header. Whole seconds: the
    // RFC's delta-seconds, and a service ignores any other value.
    const wait = Math.ceil(opts.completionWait);
    const headers = wait > 0 ? { Prefer: `wait=${wait}` } : {};
    const file = await this.#api("POST", `uploads/${id}/complete`, { ...opts, headers });
    notify(opts.onFile, file);
    return this.#verdict(file, deadline, opts);
  }

  /** Poll a `verifying` file until it is not: the File once available, else an S3gateError. */
  async #verdict(file, deadline, opts) {
    let current = file;
    let delay = POLL_FIRST_MS;
    while (current.status === "verifying") {
      const left = deadline - Date.now();
      if (left <= 0)
        throw new S3gateError(
          `upload ${current.id} is still being verified after ${opts.verifyTimeoutMs / 1000} s`,
          { code: "verification_timeout", status: 202 },
        );
      // Equal jitter: spread out, yet never much sooner than the backoff says.
      await sleep(Math.min(left, delay / 2 + (Math.random() * delay) / 2), opts.signal);
      delay = Math.min(delay * 2, POLL_MAX_MS);
      current = await this.getFile(current.id, opts);
      notify(opts.onFile, current);
    }
    if (current.status === "available") return current;
    // The codes `complete` answers for such a file, so callers handle both ways alike.
    const [code, status, detail] = {
      rejected: ["upload_rejected", 422, "the service rejected the bytes when it verified them"],
      expired: ["upload_expired", 409, "the upload expired"],
    }[current.status] ?? ["upload_incomplete", 409, `it is ${current.status}: complete it again`];
    const next = code === "upload_incomplete" ? "" : "; create a new upload";
    throw new S3gateError(`upload ${current.id}: ${detail}${next}`, { code, status });
  }

  async #create(body, key, opts) {
    const answer = await this.#api("POST", "uploads", {
      ...opts,
      body,
      headers: { "Idempotency-Key": key },
    });
    return { ...answer, key, body }; // replaying needs this very key and body
  }

  async #sendParts(file, created, progress, opts) {
    const id = created.file.id;
    const { part_size: partSize, part_count: partCount } = created.upload;
    const partBytes = (n) => Math.min(partSize, file.size - (n - 1) * partSize);

    // Resume: skip every part the store already holds at its full size.
    const stored = await this.#api("GET", `uploads/${id}/parts`, opts);
    const held = new Set(
      stored.parts.filter((p) => p.size === partBytes(p.part_number)).map((p) => p.part_number),
    );
    for (const n of held) progress.set(n, partBytes(n));
    const todo = [];
    for (let n = 1; n <= partCount; n += 1) if (!held.has(n)) todo.push(n);

    const urls = new Map();
    let pendingBatch = null;
    const fetchUrls = async (numbers) => {
      const answer = await this.#api("POST", `uploads/${id}/parts`, {
        ...opts,
        body: { part_numbers: numbers },
      });
      for (const part of answer.parts) urls.set(part.part_number, part);
    };
    const urlFor = async (n, stale) => {
      for (;;) {
        const known = urls.get(n);
        if (known && known !== stale && expiresInMs(known) > URL_REFRESH_MARGIN_MS) return known;
        if (!pendingBatch) {
          const batch = [n, ...todo.filter((m) => m !== n && !urls.has(m))].slice(
            0,
            opts.partBatch,
          );
          pendingBatch = fetchUrls(batch).finally(() => {
            pendingBatch = null;
          });
          await pendingBatch;
          return urls.get(n); // just signed: use it, however short the configured TTL
        }
        await pendingBatch; // one batch request at a time; it may have covered this part
        const fresh = urls.get(n);
        if (fresh && fresh !== known) return fresh;
      }
    };

    // One failing part stops the others: an AbortController chained to the caller's signal.
    const stop = new AbortController();
    const onAbort = () => stop.abort(opts.signal.reason);
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    const worker = async () => {
      while (todo.length) {
        const n = todo.shift();
        const blob = file.slice((n - 1) * partSize, (n - 1) * partSize + partBytes(n));
        let current = await urlFor(n, null);
        const refresh = async () => (current = await urlFor(n, current));
        await sendWithRetries(current, blob, refresh, (loaded) => progress.set(n, loaded), {
          ...opts,
          signal: stop.signal,
        });
      }
    };
    try {
      const workers = Array.from(
        { length: Math.max(1, Math.min(opts.concurrency, todo.length)) },
        worker,
      );
      await Promise.all(
        workers.map((w) =>
          w.catch((error) => {
            stop.abort(error);
            throw error;
          }),
        ),
      );
    } finally {
      opts.signal?.removeEventListener("abort", onAbort);
    }
  }

  async #authorization(override) {
    const source = override ?? this.#token;
    const token = typeof source === "function" ? await source() : source;
    if (!token)
      throw new S3gateError("no token: pass {token} to createClient or the call", {
        code: "missing_token",
        status: 401,
      });
    return `Bearer ${token}`;
  }

  /** An API call whose answer is `{items}` (not paged): the items. */
  async #items(method, path, options) {
    return (await this.#api(method, path, options)).items;
  }

  /** One API call, retried on network errors, 429 and 5xx (every s3gate call is retry-safe). */
  async #api(
    method,
    path,
    { body, headers = {}, signal = null, token = null, retries = DEFAULTS.retries } = {},
  ) {
    const init = {
      method,
      signal,
      cache: "no-store",
      credentials: "omit",
      headers: {
        Accept: "application/json",
        Authorization: await this.#authorization(token),
        ...headers,
      },
    };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    for (let attempt = 1; ; attempt += 1) {
      let response;
      try {
        response = await fetch(new URL(path, this.#baseUrl), init);
      } catch (error) {
        if (signal?.aborted) throw signal.reason;
        if (attempt >= retries)
          throw new S3gateError("the service could not be reached", { code: "network_error" });
        await sleep(backoffMs(attempt), signal);
        continue;
      }
      if (response.ok) return response.status === 204 ? null : response.json();
      const error = await problemError(response);
      if (attempt >= retries || !(response.status === 429 || response.status >= 500)) throw error;
      await sleep(error.retryAfter != null ? error.retryAfter * 1000 : backoffMs(attempt), signal);
    }
  }
}

/** `files/{id}/...`, each segment escaped: ids come from callers. */
function filePath(id, ...segments) {
  return ["files", id, ...segments].map((segment) => encodeURIComponent(segment)).join("/");
}

/** An RFC 3339 timestamp from a Date, or a string passed as is (it must carry its zone). */
function timestamp(value) {
  return value instanceof Date ? value.toISOString() : String(value);
}

/**
 * A refusal that a retry with the same request cannot change: a 4xx other than 401 (a token
 * to renew), 408 and 429 (wait and retry).
 */
/** The type/subtype of a Content-Type, lower-cased, without parameters (as the service does). */
function essence(value) {
  return String(value).split(";", 1)[0].trim().toLowerCase();
}

// Whether `type` matches one of "*/*", "major/*" or the exact "type/subtype".
function typeAllowed(type, patterns) {
  const major = type.split("/", 1)[0];
  return patterns.some((p) => p === "*/*" || p === type || p === `${major}/*`);
}

/** Upload options within what the service publishes: part URLs per request, and the longest
 * `Prefer: wait` it honours. */
function withinSettings(opts, settings) {
  if (!settings) return opts;
  return {
    ...opts,
    partBatch: Math.max(1, Math.min(opts.partBatch, settings.max_part_numbers_per_request)),
    completionWait: Math.min(opts.completionWait, settings.completion_max_wait_seconds),
  };
}

function isFinal(error) {
  const { status } = error instanceof S3gateError ? error : {};
  return status >= 400 && status < 500 && ![401, 408, 429].includes(status);
}

async function problemError(response) {
  let problem = null;
  try {
    problem = await response.json();
  } catch {
    // not JSON: a proxy's error page, say
  }
  const retryAfter = Number.parseInt(response.headers.get("Retry-After") ?? "", 10);
  return new S3gateError(problem?.detail || problem?.title || `HTTP ${response.status}`, {
    code: problem?.code ?? `http_${response.status}`,
    status: response.status,
    problem,
    retryAfter: Number.isFinite(retryAfter) ? retryAfter : null,
  });
}

/**
 * PUT `body` to a presigned request, retrying what a retry can fix. `refresh()` returns a new
 * request when S3 says the URL no longer works (403: expired, or the clock moved past it).
 */
async function sendWithRetries(request, body, refresh, onLoaded, opts) {
  let current = request;
  for (let attempt = 1; ; attempt += 1) {
    abortIfNeeded(opts.signal);
    let result;
    try {
      result = await xhrPut(current, body, onLoaded, opts.signal);
    } catch (error) {
      if (!(error instanceof S3gateError) || attempt >= opts.retries) throw error;
      await sleep(backoffMs(attempt), opts.signal);
      continue;
    }
    // 412: `If-None-Match: *` met an object, i.e. an earlier attempt of this PUT landed (its
    // answer was lost). The service's completion check proves the bytes either way.
    if ((result.status >= 200 && result.status < 300) || result.status === 412) return;
    onLoaded(0);
    const retryable = result.status === 403 || result.status >= 500 || result.status === 429;
    if (!retryable || attempt >= opts.retries) {
      throw new S3gateError(`the store refused the upload (${result.s3Code ?? result.status})`, {
        code: "storage_refused",
        status: result.status,
        s3Code: result.s3Code,
      });
    }
    if (result.status === 403) current = await refresh();
    else await sleep(backoffMs(attempt), opts.signal);
  }
}

function xhrPut(request, body, onLoaded, signal) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", request.url);
    for (const [name, value] of Object.entries(request.headers ?? {}))
      xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (event) => onLoaded(event.loaded);
    xhr.onload = () => {
      // Only S3's error code is kept: its XML can echo the signature and canonical request.
      const match = /<Code>([A-Za-z0-9.]{1,64})<\/Code>/.exec(xhr.responseText ?? "");
      if (xhr.status >= 200 && xhr.status < 300) onLoaded(body.size);
      resolve({ status: xhr.status, s3Code: match ? match[1] : null });
    };
    // Status 0: the connection failed, or the bucket's CORS refused this origin (browsers do
    // not tell which).
    xhr.onerror = () =>
      reject(
        new S3gateError("the store could not be reached (network or CORS)", {
          code: "network_error",
        }),
      );
    xhr.onabort = () => reject(signal?.reason ?? new DOMException("upload aborted", "AbortError"));
    if (signal) {
      if (signal.aborted) return reject(signal.reason);
      signal.addEventListener("abort", () => xhr.abort(), { once: true });
    }
    xhr.send(body);
  });
}

/** Bytes sent across every part; reported values never go down (a retried part restarts at 0). */
class Progress {
  #total;
  #callback;
  #parts = new Map();
  #reported = -1;

  constructor(total, callback) {
    this.#total = total;
    this.#callback = typeof callback === "function" ? callback : null;
  }

  set(part, loaded) {
    this.#parts.set(part, loaded);
    let sum = 0;
    for (const value of this.#parts.values()) sum += value;
    this.#emit(Math.min(sum, this.#total));
  }

  finish() {
    this.#emit(this.#total);
  }

  #emit(loaded) {
    if (!this.#callback || loaded <= this.#reported) return;
    this.#reported = loaded;
    this.#callback({
      loaded,
      total: this.#total,
      fraction: this.#total ? loaded / this.#total : 1,
    });
  }
}

/** What lets a reloaded page find its unfinished upload: the create's Idempotency-Key and body. */
class ResumeRecord {
  #storageKey;
  #body;

  constructor(baseUrl, file, body, resumeKey = null) {
    // The caller's own identity for the file (an Uppy file id, say), else one from the File.
    const id =
      resumeKey != null
        ? `key\u0000${resumeKey}`
        : [file.name ?? "", file.size, file.lastModified ?? 0, body.content_type].join("\u0000");
    this.#storageKey = `${RESUME_PREFIX}${baseUrl}\u0000${id}`;
    this.#body = body;
  }

  load() {
    const record = readJson(this.#storageKey);
    if (!record || Date.now() - record.savedAt > RESUME_RECORD_MAX_AGE_MS) return null;
    // The body is replayed as saved; a different checksum means other bytes: not a resume.
    const { checksum_sha256: saved = null } = record.body;
    const { checksum_sha256: now = null } = this.#body;
    return saved === now || now === null ? record : null;
  }

  save(key, id) {
    writeJson(this.#storageKey, { key, id, body: this.#body, savedAt: Date.now() });
  }

  forget() {
    removeItem(this.#storageKey);
  }

  /** Drop the record of upload `id` (records are keyed by file, so look through them). */
  static forgetId(baseUrl, id) {
    const prefix = `${RESUME_PREFIX}${baseUrl}\u0000`;
    let keys = [];
    try {
      const storage = globalThis.localStorage;
      keys = Array.from({ length: storage?.length ?? 0 }, (_, i) => storage.key(i));
    } catch {
      return;
    }
    for (const key of keys) {
      if (key?.startsWith(prefix) && readJson(key)?.id === id) removeItem(key);
    }
  }
}

/** Tell the caller what the service answered about the file; its exceptions are its own. */
function notify(callback, file) {
  if (typeof callback !== "function") return;
  try {
    callback(file);
  } catch (error) {
    console.error("s3gate: onFile callback failed", error);
  }
}

function readJson(key) {
  try {
    return JSON.parse(globalThis.localStorage?.getItem(key) ?? "null");
  } catch {
    return null;
  }
}

function writeJson(key, value) {
  try {
    globalThis.localStorage?.setItem(key, JSON.stringify(value));
  } catch {
    // storage full or disabled: the upload works, it just cannot resume after a reload
  }
}

function removeItem(key) {
  try {
    globalThis.localStorage?.removeItem(key);
  } catch {
    // nothing to forget
  }
}

/** The base64 SHA-256 of a Blob, as `checksum_sha256` declares it (the bytes in memory). */
export async function sha256Base64(blob) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", await blob.arrayBuffer()));
  let binary = "";
  for (const byte of digest) binary += String.fromCharCode(byte);
  return btoa(binary);
}

function randomId() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function expiresInMs(presigned) {
  return Date.parse(presigned.expires_at) - Date.now();
}

/** Exponential backoff with full jitter: 0..min(8 s, 0.5 s * 2^(attempt-1)). */
function backoffMs(attempt) {
  return Math.random() * Math.min(8000, 500 * 2 ** (attempt - 1));
}

function abortIfNeeded(signal) {
  if (signal?.aborted) throw signal.reason ?? new DOMException("aborted", "AbortError");
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        reject(signal.reason);
      },
      { once: true },
    );
  });
}

// Shortcuts on a client for the API this module was served from; pass {token} in options.
export const upload = (file, options = {}) =>
  createClient({ token: options.token }).upload(file, options);
export const download = (id, options = {}) =>
  createClient({ token: options.token }).download(id, options);
export const list = (options = {}) => createClient({ token: options.token }).list(options);
