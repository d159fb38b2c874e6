// s3gate for Uppy (https://uppy.io), served by the service at /client/uppy.js (types:
// /client/uppy.d.ts). Built on /client/s3gate.js, and like it free of dependencies: it imports
// nothing from Uppy, so it loads straight from the service or through an app's bundler.
//
//   import Uppy from "@uppy/core";
//   import Dashboard from "@uppy/dashboard";
//   import S3gate from "https://api.example.com/client/uppy.js";
//   new Uppy()
//     .use(Dashboard, { inline: true, target: "#uploader" })
//     .use(S3gate, { endpoint: "https://api.example.com/", token: () => auth.accessToken() });
//
// Supported: Uppy 6 (@uppy/core >=6.0.0 <7; the browser tests pin 6.3.1). The service plans
// every upload (single PUT or multipart, the part size) and the client follows its answer, so
// no setting is copied into the page. Each Uppy file gets `s3gate: {id, status, code}`:
// `pending`, `verifying`, `available`, `rejected`, `expired`, and the problem code of a failure.
//
// For apps that keep @uppy/aws-s3 6.x, `awsS3Options(uppy, {endpoint, token})` returns its
// options (see there).

import { createClient, S3gateError, sha256Base64 } from "./s3gate.js";

/** The @uppy/core majors this plugin is written and tested for. */
export const SUPPORTED_UPPY = ">=6.0.0 <7";

// Attempts per request. More than s3gate.js's 5: a widget sends several files at once, and
// under a tight rate limit each 429 (waited out as its Retry-After says) counts as one.
const RETRIES = 8;

// What `upload()` of s3gate.js takes from the plugin's options as they are.
const UPLOAD_OPTIONS = [
  "concurrency",
  "retries",
  "partBatch",
  "checksum",
  "checksumMaxBytes",
  "completionWait",
  "verifyTimeoutMs",
  "multipart",
];

/**
 * The uploader plugin: `uppy.use(S3gate, {endpoint, token})`. Progress, pause and resume (the
 * parts the store holds are kept), cancel (the upload is abandoned), retries (Retry-After
 * honoured), restore after a reload with @uppy/golden-retriever, and the verdict of the service
 * on each file.
 */
export default class S3gate {
  static VERSION = "1.0.0";

  #client;
  #tasks = new Map();
  #running = 0;
  #waiting = [];

  constructor(uppy, opts = {}) {
    this.uppy = uppy;
    this.type = "uploader";
    this.id = opts.id ?? "S3gate";
    this.opts = { limit: 3, retries: RETRIES, ...opts };
    this.#client =
      opts.client ?? createClient({ baseUrl: opts.endpoint ?? undefined, token: opts.token });
  }

  /** The s3gate.js client the plugin uploads with (for downloads, listings, ...). */
  get client() {
    return this.#client;
  }

  install() {
    this.#resumable(true);
    this.uppy.addUploader(this.#upload);
    this.uppy.on("upload-pause", this.#onPause);
    this.uppy.on("pause-all", this.#onPauseAll);
    this.uppy.on("resume-all", this.#onResumeAll);
    this.uppy.on("file-removed", this.#onRemoved);
    this.uppy.on("cancel-all", this.#onCancelAll);
  }

  uninstall() {
    this.#resumable(false);
    this.uppy.removeUploader(this.#upload);
    this.uppy.off("upload-pause", this.#onPause);
    this.uppy.off("pause-all", this.#onPauseAll);
    this.uppy.off("resume-all", this.#onResumeAll);
    this.uppy.off("file-removed", this.#onRemoved);
    this.uppy.off("cancel-all", this.#onCancelAll);
    for (const task of this.#tasks.values()) this.#stop(task);
  }

  // What Uppy calls on every plugin.
  update() {}

  setOptions(opts) {
    this.opts = { ...this.opts, ...opts };
  }

  getPluginState() {
    return this.uppy.getState().plugins?.[this.id] ?? {};
  }

  setPluginState(update) {
    const { plugins = {} } = this.uppy.getState();
    this.uppy.setState({ plugins: { ...plugins, [this.id]: { ...plugins[this.id], ...update } } });
  }

  #resumable(value) {
    const { capabilities } = this.uppy.getState();
    this.uppy.setState({ capabilities: { ...capabilities, resumableUploads: value } });
  }

  #upload = async (fileIDs) => {
    const files = fileIDs
      .map((id) => this.uppy.getFile(id))
      .filter((file) => file && !file.error && !file.progress?.uploadComplete);
    if (files.length === 0) return;
    // A restored file had started before the reload: Uppy keeps its progress.
    this.uppy.emit(
      "upload-start",
      files.filter((file) => !file.progress?.uploadStarted || !file.isRestored),
    );
    const tasks = files.map((file) => this.#task(file));
    await Promise.allSettled(tasks.map((task) => this.#limited(() => this.#run(task))));
  };

  #task(file) {
    const task = {
      uppyId: file.id,
      paused: Boolean(file.isPaused),
      removed: false,
      controller: null,
      wake: null,
      fileId: file.s3gate?.id ?? null,
    };
    this.#tasks.set(file.id, task);
    return task;
  }

  async #limited(job) {
    while (this.#running >= Math.max(1, this.opts.limit)) {
      await new Promise((resolve) => this.#waiting.push(resolve));
    }
    this.#running += 1;
    try {
      return await job();
    } finally {
      this.#running -= 1;
      this.#waiting.shift()?.();
    }
  }

  async #run(task) {
    try {
      for (;;) {
        if (task.removed) break;
        if (task.paused) {
          await new Promise((resolve) => {
            task.wake = resolve;
          });
          task.wake = null;
          continue;
        }
        const file = this.uppy.getFile(task.uppyId);
        if (!file) break;
        if (file.data == null || file.isRemote) {
          this.#failed(
            task,
            new S3gateError(
              file.isRemote
                ? "s3gate uploads files from this device only"
                : "the file's bytes are gone (not restored): add it again",
              { code: "file_unavailable" },
            ),
          );
          return;
        }
        const controller = new AbortController();
        task.controller = controller;
        // Never below what Uppy already shows (a resumed upload restarts its part in flight).
        let shown = file.progress?.bytesUploaded || 0;
        try {
          const done = await this.#client.upload(file.data, {
            ...pick(this.opts, UPLOAD_OPTIONS),
            filename: file.meta?.name || file.name,
            contentType: file.meta?.type || file.type || undefined,
            resumeKey: `uppy\u0000${this.uppy.getID()}\u0000${file.id}`,
            signal: controller.signal,
            onProgress: ({ loaded, total }) => {
              if (loaded <= shown) return;
              shown = loaded;
              const current = this.uppy.getFile(task.uppyId);
              if (!current || controller.signal.aborted) return;
              this.uppy.emit("upload-progress", current, {
                uploadStarted: current.progress?.uploadStarted ?? Date.now(),
                bytesUploaded: loaded,
                bytesTotal: total,
              });
            },
            onFile: (resource) => {
              task.fileId = resource.id;
              if (controller.signal.aborted) return;
              this.#record(task, { id: resource.id, status: resource.status, code: null });
            },
          });
          this.#succeeded(task, done);
          return;
        } catch (error) {
          // Only this plugin aborts its controller: a pause (go round) or a removal (stop).
          if (controller.signal.aborted) continue;
          this.#failed(task, error);
          return;
        }
      }
      if (task.removed && task.fileId) {
        // Abandoned: the service aborts it and forgets the file (idempotent, 204 if it ended).
        await this.#client.abandon(task.fileId).catch((error) => {
          this.uppy.log(`[S3gate] could not abandon ${task.fileId}: ${error?.code}`, "warning");
        });
      }
    } finally {
      if (this.#tasks.get(task.uppyId) === task) this.#tasks.delete(task.uppyId);
    }
  }

  #record(task, state) {
    if (!this.uppy.getFile(task.uppyId)) return;
    this.uppy.setFileState(task.uppyId, { s3gate: state });
    this.uppy.emit("s3gate:status", this.uppy.getFile(task.uppyId), state);
  }

  #succeeded(task, resource) {
    this.#record(task, { id: resource.id, status: resource.status, code: null });
    const file = this.uppy.getFile(task.uppyId);
    if (!file) return;
    this.uppy.emit("upload-success", file, { status: 200, body: resource });
  }

  #failed(task, error) {
    const code = error?.code ?? error?.name ?? "error";
    const status =
      { upload_rejected: "rejected", upload_expired: "expired" }[code] ??
      this.uppy.getFile(task.uppyId)?.s3gate?.status ??
      null;
    this.#record(task, { id: task.fileId, status, code });
    const file = this.uppy.getFile(task.uppyId);
    if (!file) return;
    const response = { status: error?.status ?? 0, body: error?.problem ?? { code } };
    this.uppy.emit("upload-error", file, problemError(error), response);
  }

  #stop(task) {
    task.removed = true;
    task.controller?.abort(new DOMException("upload cancelled", "AbortError"));
    task.wake?.();
  }

  #onPause = (file, isPaused) => {
    const task = file && this.#tasks.get(file.id);
    if (!task) return;
    if (isPaused) this.#pauseTask(task);
    else this.#resumeTask(task);
  };

  #onPauseAll = () => {
    for (const task of this.#tasks.values()) this.#pauseTask(task);
  };

  #onResumeAll = () => {
    for (const task of this.#tasks.values()) this.#resumeTask(task);
  };

  #pauseTask(task) {
    task.paused = true;
    task.controller?.abort(new DOMException("upload paused", "AbortError"));
  }

  #resumeTask(task) {
    task.paused = false;
    task.wake?.();
  }

  #onRemoved = (file) => {
    const task = file && this.#tasks.get(file.id);
    if (task) this.#stop(task);
  };

  #onCancelAll = () => {
    for (const task of this.#tasks.values()) this.#stop(task);
  };
}

export { S3gate };

const AWS_S3_PART_BATCH = 16; // part URLs asked for at once (the plugin sends parts in order)
const URL_REFRESH_MARGIN_MS = 30_000;

/**
 * Options for @uppy/aws-s3 6.x (>=6.2.0 <7: it sends the headers a signer returns) against
 * s3gate, for apps that keep that plugin: `uppy.use(AwsS3, awsS3Options(uppy, {endpoint,
 * token}))`.
 *
 * s3gate creates, lists and completes multipart uploads on its own side, where @uppy/aws-s3
 * sends those requests to S3 and parses S3's XML. So a pre-processor declares each file
 * (`POST /uploads` with its size, type and the SHA-256 computed here, the part size when the
 * service's threshold says multipart, and an Idempotency-Key derived from the Uppy file id);
 * `signRequest` answers PUTs with s3gate's URLs and signed headers (part URLs asked for 16 at a
 * time), and the create, list, complete and abort requests with `data:` URLs carrying the XML
 * the plugin expects (a page with a Content-Security-Policy needs `data:` in connect-src),
 * the list from `GET /uploads/{id}/parts`; a post-processor has the service `complete` each
 * file and waits for its verdict. The threshold and the part size come from
 * `GET /uploads/settings`; no setting is copied.
 */
export function awsS3Options(
  uppy,
  { endpoint = null, token = null, client = null, ...clientOptions } = {},
) {
  // clientOptions: s3gate.js's `retries`, `completionWait`, `verifyTimeoutMs`.
  const s3gate =
    client ??
    createClient({ retries: RETRIES, ...clientOptions, baseUrl: endpoint ?? undefined, token });
  const plans = new Map(); // s3gate file id -> {plan, urls: Map(part number -> part URL)}
  const failures = new Map(); // Uppy file id -> why the service refused to declare it
  let settings = null;

  const partSize = (size) => {
    const grown = Math.ceil(size / settings.max_parts / 1048576) * 1048576;
    return Math.min(settings.max_part_size, Math.max(settings.part_size, grown));
  };

  const declare = async (file) => {
    const size = file.data.size;
    const body = {
      filename: file.meta?.name || file.name,
      content_type: file.meta?.type || file.type || "application/octet-stream",
      size,
      checksum_sha256: await sha256Base64(file.data),
    };
    if (size > settings.multipart_threshold) body.part_size = partSize(size);
    const first = file.s3gate?.attempt ?? 0;
    for (let attempt = first; ; attempt += 1) {
      const idempotencyKey = await stableKey(uppy, file, attempt);
      try {
        return { ...(await s3gate.createUpload(body, { idempotencyKey })), attempt };
      } catch (error) {
        // That key's upload has ended (rejected, expired, abandoned): declare a new one.
        if (error?.code !== "not_pending" || attempt > first) throw error;
      }
    }
  };

  uppy.addPreProcessor(async (fileIDs) => {
    const files = fileIDs
      .map((id) => uppy.getFile(id))
      .filter((f) => f && !f.error && !f.progress?.uploadComplete && f.data && !f.isRemote);
    if (files.length === 0) return;
    try {
      settings ??= await s3gate.uploadSettings();
    } catch (error) {
      for (const file of files) failures.set(file.id, error);
      return;
    }
    await Promise.all(
      files.map(async (file) => {
        failures.delete(file.id);
        uppy.emit("preprocess-progress", file, { mode: "indeterminate", message: "Declaring" });
        try {
          const { file: resource, upload, attempt } = await declare(file);
          if (upload.method !== "PUT" && upload.method !== "MULTIPART") {
            throw new S3gateError(`unexpected upload method ${upload.method}`, {
              code: "unsupported_upload",
            });
          }
          plans.set(resource.id, { plan: upload, urls: new Map() });
          const multipart = upload.method === "MULTIPART";
          const { id, status } = resource;
          const state = { id, status, code: null, attempt, multipart };
          // Kept with the file (Golden Retriever too): a restored upload chunks as planned.
          if (multipart) state.partSize = upload.part_size;
          uppy.setFileState(file.id, { s3gate: state });
        } catch (error) {
          failures.set(file.id, error);
        } finally {
          if (uppy.getFile(file.id)) uppy.emit("preprocess-complete", uppy.getFile(file.id));
        }
      }),
    );
  });

  uppy.addPostProcessor(async (fileIDs) => {
    const files = fileIDs.map((id) => uppy.getFile(id)).filter((f) => f?.s3gate?.id && !f.error);
    await Promise.all(
      files.map((file) => {
        if (file.progress?.uploadComplete) return verify(file);
        // @uppy/aws-s3 gave up on it without a word (it swallows its own exceptions).
        const error = new S3gateError("the bytes were not all sent", { code: "upload_incomplete" });
        const response = { status: 0, body: { code: error.code } };
        uppy.emit("upload-error", file, problemError(error), response);
        return null;
      }),
    );
  });

  const setStatus = (file, patch) => {
    const current = uppy.getFile(file.id);
    if (!current) return null;
    const state = { ...current.s3gate, ...patch };
    uppy.setFileState(file.id, { s3gate: state });
    uppy.emit("s3gate:status", uppy.getFile(file.id), state);
    return uppy.getFile(file.id);
  };

  const verify = async (file) => {
    const { id } = file.s3gate;
    uppy.emit("postprocess-progress", file, { mode: "indeterminate", message: "Verifying" });
    try {
      const done = await s3gate.complete(id, {
        onFile: (resource) => setStatus(file, { status: resource.status }),
      });
      setStatus(file, { status: done.status, code: null });
      plans.delete(id);
    } catch (error) {
      const code = error?.code ?? "error";
      const status =
        { upload_rejected: "rejected", upload_expired: "expired" }[code] ?? "pending";
      const current = setStatus(file, { status, code });
      if (current) {
        uppy.emit("upload-error", current, problemError(error), {
          status: error?.status ?? 0,
          body: error?.problem ?? { code },
        });
      }
    } finally {
      if (uppy.getFile(file.id)) uppy.emit("postprocess-complete", uppy.getFile(file.id));
    }
  };

  /** The PUT of file `id`; one about to expire (or lost in a reload) comes from replaying its
   * create with the same Idempotency-Key: same file, fresh URL. */
  const singlePut = async (id) => {
    let known = plans.get(id);
    const fresh = (k) => Date.parse(k.plan.expires_at) - Date.now() > URL_REFRESH_MARGIN_MS;
    if (!known || (known.plan.method === "PUT" && !fresh(known))) {
      const file = uppy.getFiles().find((f) => f.s3gate?.id === id);
      if (!file?.data) throw unsupported("a PUT for a file it did not declare");
      settings ??= await s3gate.uploadSettings();
      const { file: resource, upload, attempt } = await declare(file);
      known = { plan: upload, urls: new Map() };
      plans.set(resource.id, known);
      // An ended upload is declared anew: the file follows the new one.
      uppy.setFileState(file.id, {
        s3gate: { ...file.s3gate, id: resource.id, status: resource.status, attempt },
      });
    }
    if (known.plan.method !== "PUT") throw unsupported("a single PUT of a multipart upload");
    return known;
  };

  const planFor = async (id) => {
    let known = plans.get(id);
    if (!known) {
      // Restored after a reload, past the pre-processor: the service has the plan.
      const stored = await s3gate.storedParts(id);
      const { part_size, part_count } = stored;
      const plan = { method: "MULTIPART", part_size, part_count };
      known = { plan, urls: new Map() };
      plans.set(id, known);
    }
    return known;
  };

  const partUrl = async (id, partNumber) => {
    const known = await planFor(id);
    const cached = known.urls.get(partNumber);
    if (cached && Date.parse(cached.expires_at) - Date.now() > URL_REFRESH_MARGIN_MS) return cached;
    const numbers = [];
    for (let n = partNumber; n <= known.plan.part_count && numbers.length < AWS_S3_PART_BATCH; n++)
      numbers.push(n);
    for (const part of await s3gate.partUrls(id, numbers)) known.urls.set(part.part_number, part);
    return known.urls.get(partNumber);
  };

  const signRequest = async ({ method, key, uploadId, partNumber }) => {
    // A file the service refused to declare still has its Uppy id as key: that refusal it is.
    if (failures.has(key)) throw problemError(failures.get(key));
    if (method === "PUT" && uploadId == null) {
      const { plan } = await singlePut(key);
      return { url: plan.url, headers: { ...plan.headers } };
    }
    if (method === "PUT") {
      const part = await partUrl(uploadId, partNumber);
      return { url: part.url, headers: { ...part.headers } };
    }
    if (method === "POST" && uploadId == null) {
      // CreateMultipartUpload: the service created it when it declared the file.
      if (plans.get(key)?.plan.method !== "MULTIPART") throw unsupported("multipart");
      return xml("InitiateMultipartUploadResult", `<Key>${key}</Key><UploadId>${key}</UploadId>`);
    }
    if (method === "GET") {
      // ListParts (a resume): the parts the store holds, each at its planned size.
      const stored = await s3gate.storedParts(uploadId);
      const size = uppy.getFiles().find((f) => f.s3gate?.id === uploadId)?.size;
      const planned = (n) => Math.min(stored.part_size, size - (n - 1) * stored.part_size);
      const parts = stored.parts
        .filter((p) => size == null || p.size === planned(p.part_number))
        .map((p) => `<Part><PartNumber>${p.part_number}</PartNumber><ETag>held</ETag></Part>`);
      return xml("ListPartsResult", parts.join(""));
    }
    if (method === "POST") {
      // CompleteMultipartUpload: the post-processor has the service complete and verify it.
      const location = new URL(`files/${encodeURIComponent(uploadId)}`, apiRoot(endpoint)).href;
      return xml(
        "CompleteMultipartUploadResult",
        `<Location>${location}</Location><Key>${uploadId}</Key>`,
      );
    }
    if (method === "DELETE" && uploadId != null) {
      // AbortMultipartUpload (the file was removed): abandon it (idempotent).
      await s3gate.abandon(uploadId).catch(() => {});
      return xml("AbortMultipartUploadResult", "");
    }
    throw unsupported(method);
  };

  return {
    // The service decided when it declared the file; these only follow its answer.
    shouldUseMultipart: (file) => Boolean(file.s3gate?.multipart),
    // The part size the file was declared with (restored after a reload, too), else the
    // one the pre-processor is about to declare.
    getChunkSize: ({ size }) =>
      uppy.getFiles().find((f) => f.s3gate?.partSize && f.size === size)?.s3gate.partSize ??
      partSize(size),
    generateObjectKey: (file) => file.s3gate?.id ?? file.id,
    signRequest,
  };
}

/** What Uppy shows on a failed file: the API's problem code first. */
function problemError(error) {
  const code = error?.code ?? error?.name ?? "error";
  const failure = new Error(`${code}: ${error?.message ?? String(error)}`);
  failure.code = code;
  failure.cause = error;
  return failure;
}

function unsupported(what) {
  return new S3gateError(`s3gate signs no ${what} for @uppy/aws-s3`, {
    code: "unsupported_upload",
  });
}

/** A `data:` URL answering any method with this XML, as S3 would. */
function xml(root, inner) {
  const body = `<?xml version="1.0" encoding="UTF-8"?><${root}>${inner}</${root}>`;
  return { url: `data:application/xml,${encodeURIComponent(body)}` };
}

function apiRoot(endpoint) {
  return endpoint ?? new URL("../", import.meta.url).href;
}

/** The same key for the same Uppy instance, file and attempt (printable ASCII, as asked). */
async function stableKey(uppy, file, attempt) {
  const text = `s3gate-uppy\u0000${uppy.getID()}\u0000${file.id}\u0000${attempt}`;
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  const hex = Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0"));
  return `uppy-${hex.join("")}`;
}

function pick(source, names) {
  const picked = {};
  for (const name of names) if (source[name] !== undefined) picked[name] = source[name];
  return picked;
}
