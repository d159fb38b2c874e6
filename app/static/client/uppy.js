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
    this.#settings().catch(() => {}); // Uppy's restrictions, before files are added
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

  /** GET /uploads/settings (once); Uppy's restrictions follow it unless `restrict: false`. */
  #settings() {
    return publishedSettings(this.uppy, this.#client, this.opts.restrict !== false);
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
    await this.#settings().catch(() => {}); // a failure is the create's to report
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
    if (task) {
      this.#stop(task); // its run abandons it
    } else if (file?.s3gate?.id && file.s3gate.status === "pending") {
      // Declared but not running (failed, or not started again): abandoned too.
      this.#client.abandon(file.s3gate.id).catch((error) => {
        this.uppy.log(`[S3gate] could not abandon ${file.s3gate.id}: ${error?.code}`, "warning");
      });
    }
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
 * s3gate creates, lists and completes uploads on its own side, where @uppy/aws-s3 sends those
 * requests to S3 and parses S3's XML. So a pre-processor declares each file (`POST /uploads`
 * with its size, type and the SHA-256 computed here, the part size when the service's
 * threshold says multipart, and an Idempotency-Key derived from the Uppy file id), and every
 * file but an empty one goes through @uppy/aws-s3's multipart flow, a file the service plans
 * as one PUT being its one part: `signRequest` answers PUTs with s3gate's URLs and signed
 * headers (part URLs asked for 16 at a time), and the create, list, complete and abort
 * requests with `data:` URLs carrying the XML the plugin expects (a page with a
 * Content-Security-Policy needs `data:` in connect-src). Answering "complete" is where the
 * service completes the file and its verdict is waited for, so a refused file fails in Uppy
 * before it is ever shown as uploaded; answering "list" (a retry, a restore) asks the service
 * what it holds, so a PUT that already landed is not sent again; answering "abort" abandons
 * it. The threshold and the part size come from `GET /uploads/settings`; no setting is copied.
 */
export function awsS3Options(
  uppy,
  { endpoint = null, token = null, client = null, restrict = true, ...clientOptions } = {},
) {
  // clientOptions: s3gate.js's `retries`, `completionWait`, `verifyTimeoutMs`.
  const s3gate =
    client ??
    createClient({ retries: RETRIES, ...clientOptions, baseUrl: endpoint ?? undefined, token });
  const plans = new Map(); // s3gate file id -> {plan, urls: Map(part number -> part URL)}
  const failures = new Map(); // Uppy file id -> why the service refused to declare it
  const verdicts = new Map(); // s3gate file id -> its completion (one at a time)
  const abandoned = new Map(); // s3gate file id -> its abandon call (sent once)
  // Uppy file ids whose one PUT @uppy/aws-s3 sent again after its answer was lost (its
  // fetcher retries a dropped connection), which the store refused with 412: `If-None-Match:
  // *` met the object the first one stored. The post-processor completes them.
  const landedPuts = new Map(); // -> the 412's message, as Uppy's notice shows it
  let settings = null;
  const published = () => publishedSettings(uppy, s3gate, restrict);
  published().catch(() => {}); // Uppy's restrictions, before files are added (again on upload)

  const partSize = (size) => {
    const grown = Math.ceil(size / settings.max_parts / 1048576) * 1048576;
    return Math.min(settings.max_part_size, Math.max(settings.part_size, grown));
  };

  /** The Uppy file an S3 key or upload id (an s3gate file id) or Uppy file id names. */
  const fileFor = (key) =>
    uppy.getFiles().find((f) => f.s3gate?.id === key) ?? uppy.getFile(key) ?? null;

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
        if (error?.code !== "not_pending" || attempt > first) throw error;
        // Past pending: completed before a reload (verifying, or available already), which
        // is this file; else ended (rejected, expired, abandoned): declare a new one.
        const earlier = file.s3gate?.id ? await completedEarlier(file.s3gate.id) : null;
        if (earlier) return { file: earlier, upload: null, attempt };
      }
    }
  };

  uppy.addPreProcessor(async (fileIDs) => {
    const files = fileIDs
      .map((id) => uppy.getFile(id))
      .filter((f) => f && !f.error && !f.progress?.uploadComplete && f.data && !f.isRemote);
    if (files.length === 0) return;
    try {
      settings = await published();
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
          const { id, status } = resource;
          if (upload === null) {
            // @uppy/aws-s3 resumes it and asks to complete it (below).
            finishedPlan(file, resource);
            uppy.setFileState(file.id, { s3Multipart: { uploadId: id, key: id } });
            return;
          }
          if (upload.method !== "PUT" && upload.method !== "MULTIPART") {
            throw new S3gateError(`unexpected upload method ${upload.method}`, {
              code: "unsupported_upload",
            });
          }
          plans.set(id, { plan: upload, urls: new Map() });
          const multipart = upload.method === "MULTIPART";
          const state = { id, status, code: null, attempt, multipart };
          // Kept with the file (Golden Retriever too): a restored upload chunks as planned.
          state.partSize = multipart ? upload.part_size : file.data.size;
          const patch = { s3gate: state };
          // A new upload (the last one ended): @uppy/aws-s3 must not resume the old one.
          if (file.s3Multipart && file.s3Multipart.uploadId !== id) patch.s3Multipart = undefined;
          uppy.setFileState(file.id, patch);
        } catch (error) {
          failures.set(file.id, error);
        } finally {
          if (uppy.getFile(file.id)) uppy.emit("preprocess-complete", uppy.getFile(file.id));
        }
      }),
    );
  });

  // Every file was completed when @uppy/aws-s3 asked to complete it, but a one-PUT file whose
  // PUT was sent twice (below): the service completes that one here. Any other file still
  // pending once its bytes were sent is completed here too.
  uppy.addPostProcessor(async (fileIDs) => {
    const files = fileIDs.map((id) => uppy.getFile(id)).filter((f) => f?.s3gate?.id);
    await Promise.all(
      files.map(async (file) => {
        const resent = landedPuts.has(file.id);
        const notice = landedPuts.get(file.id);
        landedPuts.delete(file.id);
        if (file.error && !resent) return;
        if (!resent && !file.progress?.uploadComplete) {
          // @uppy/aws-s3 gave up on it without a word (it swallows its own exceptions).
          const error = new S3gateError("the bytes were not all sent", {
            code: "upload_incomplete",
          });
          uppy.emit("upload-error", file, problemError(error), failedResponse(error));
          return;
        }
        if (file.s3gate.status !== "pending" && !resent) return;
        try {
          const done = await finish(file.s3gate.id);
          if (resent && uppy.getFile(file.id)) {
            // It landed the first time: what failed was the resend. Uploaded after all.
            uppy.setFileState(file.id, { error: null });
            if (!uppy.getFiles().some((f) => f.error)) uppy.setState({ error: null });
            // Uppy's "Failed to upload" notice of the 412 is withdrawn too.
            const { info = [] } = uppy.getState();
            uppy.setState({ info: info.filter((i) => i.type !== "error" || i.details !== notice) });
            uppy.emit("upload-success", uppy.getFile(file.id), { status: 200, body: done });
          }
        } catch (error) {
          const current = uppy.getFile(file.id);
          if (current) uppy.emit("upload-error", current, error, failedResponse(error.cause));
        }
      }),
    );
  });

  uppy.on("upload-error", (file, error, response) => {
    const current = file && uppy.getFile(file.id);
    if (!current) return;
    if (error?.status === 412 && current.s3gate?.id && !current.s3gate.multipart) {
      landedPuts.set(file.id, error.message);
    } else if (response === undefined && error?.cause instanceof S3gateError) {
      // @uppy/aws-s3 emits upload-error without a response: the problem+json is it.
      uppy.setFileState(file.id, { response: failedResponse(error.cause) });
    }
  });

  // Removed before @uppy/aws-s3 had an upload to abort (declared, queued, failed): abandoned
  // too. A file the service already holds (verifying, available) stays.
  uppy.on("file-removed", (file) => {
    failures.delete(file?.id);
    landedPuts.delete(file?.id);
    const id = file?.s3gate?.id;
    if (!id) return;
    if (file.s3gate.status === "pending") abandon(id).catch(() => {});
    plans.delete(id);
    verdicts.delete(id);
  });

  const abandon = (id) => {
    let sent = abandoned.get(id);
    if (!sent) {
      sent = s3gate.abandon(id).catch((error) => {
        abandoned.delete(id);
        uppy.log(`[S3gate] could not abandon ${id}: ${error?.code}`, "warning");
      });
      abandoned.set(id, sent);
    }
    return sent;
  };

  const setStatus = (file, patch) => {
    const current = file && uppy.getFile(file.id);
    if (!current) return null;
    const state = { ...current.s3gate, ...patch };
    uppy.setFileState(file.id, { s3gate: state });
    uppy.emit("s3gate:status", uppy.getFile(file.id), state);
    return uppy.getFile(file.id);
  };

  /** `complete` and the verdict, once per file at a time: the File once available, else a
   * problemError (its cause the S3gateError) after `file.s3gate` says why. */
  const finish = async (id) => {
    const file = fileFor(id);
    let pending = verdicts.get(id);
    if (!pending) {
      pending = s3gate.complete(id, {
        onFile: (resource) => setStatus(file, { status: resource.status }),
      });
      verdicts.set(id, pending);
      pending.then(
        () => plans.delete(id),
        () => verdicts.delete(id),
      );
    }
    const verifying = { mode: "indeterminate", message: "Verifying" };
    if (file) uppy.emit("postprocess-progress", file, verifying);
    try {
      const done = await pending;
      setStatus(file, { status: done.status, code: null });
      return done;
    } catch (error) {
      const current = file && uppy.getFile(file.id);
      if (current?.progress?.postprocess) {
        const { postprocess: _, ...progress } = current.progress; // not verifying any more
        uppy.setFileState(file.id, { progress });
      }
      const code = error?.code ?? "error";
      if (code !== "upload_incomplete") {
        const status = { upload_rejected: "rejected", upload_expired: "expired" }[code];
        setStatus(file, { status: status ?? fileFor(id)?.s3gate?.status ?? "pending", code });
      }
      throw problemError(error);
    }
  };

  /** Whether a one-PUT file's object is in the store: asked by completing it (a PUT sent
   * again would meet its own `If-None-Match: *`). Rejected or expired: that failure. */
  const landed = async (id) => {
    try {
      await finish(id);
      return true;
    } catch (error) {
      if (error.code === "upload_incomplete") return false;
      throw error;
    }
  };

  /** The plan of a file whose bytes are all in (completed before a reload: `verifying` or
   * `available`): every part is reported held, so @uppy/aws-s3 sends nothing and asks to
   * complete it, which waits for the verdict. */
  const finishedPlan = (file, resource) => {
    const { multipart = false, partSize = resource.size } = file?.s3gate ?? {};
    const count = multipart ? Math.ceil(resource.size / partSize) : 1;
    const plan = { method: multipart ? "MULTIPART" : "PUT", part_count: count };
    const known = { plan, urls: new Map(), finished: true };
    plans.set(resource.id, known);
    setStatus(file, { status: resource.status, code: null });
    return known;
  };

  /** The file `id` as the service has it when it is past pending yet not over, else null. */
  const completedEarlier = async (id) => {
    const earlier = await s3gate.getFile(id);
    return earlier.status === "verifying" || earlier.status === "available" ? earlier : null;
  };

  /** The plan of file `id`; a PUT about to expire (or lost in a reload) comes from replaying
   * its create with the same Idempotency-Key: same file, fresh URL. */
  const planFor = async (id) => {
    let known = plans.get(id);
    if (known?.finished) return known;
    const file = fileFor(id);
    const multipart = known ? known.plan.method === "MULTIPART" : Boolean(file?.s3gate?.multipart);
    const fresh = (k) => Date.parse(k.plan.expires_at) - Date.now() > URL_REFRESH_MARGIN_MS;
    if (!multipart && (!known || !fresh(known))) {
      if (!file?.data) throw unsupported("a PUT for a file it did not declare");
      settings = await published();
      const { file: resource, upload, attempt } = await declare(file);
      if (upload === null) return finishedPlan(file, resource);
      plans.set(resource.id, { plan: upload, urls: new Map() });
      setStatus(file, { id: resource.id, status: resource.status, attempt });
      if (resource.id !== id) {
        // That upload ended meanwhile; a new one is declared, which a retry sends.
        uppy.setFileState(file.id, { s3Multipart: undefined });
        throw new S3gateError(`upload ${id} ended: retry to send the file again`, {
          code: "not_pending",
        });
      }
      known = plans.get(id);
    } else if (!known) {
      // Restored after a reload, past the pre-processor (Uppy resumes a restored upload at
      // the step it had reached): the service has the plan.
      let stored;
      try {
        stored = await s3gate.storedParts(id);
      } catch (error) {
        const earlier = error?.code === "not_pending" ? await completedEarlier(id) : null;
        if (!earlier) throw error;
        return finishedPlan(file, earlier);
      }
      const { part_size, part_count } = stored;
      // `held`: the list just read, for the ListParts that asked (not read twice).
      const plan = { method: "MULTIPART", part_size, part_count };
      known = { plan, urls: new Map(), held: stored };
      plans.set(id, known);
    }
    return known;
  };

  const partUrl = async (known, id, partNumber) => {
    const cached = known.urls.get(partNumber);
    if (cached && Date.parse(cached.expires_at) - Date.now() > URL_REFRESH_MARGIN_MS) return cached;
    const numbers = [];
    for (let n = partNumber; n <= known.plan.part_count && numbers.length < AWS_S3_PART_BATCH; n++)
      numbers.push(n);
    for (const part of await s3gate.partUrls(id, numbers)) known.urls.set(part.part_number, part);
    return known.urls.get(partNumber);
  };

  const storedList = async (id, known) => {
    if (known.finished) return Array.from({ length: known.plan.part_count }, (_, i) => i + 1);
    if (known.plan.method === "PUT") {
      return (await landed(id)) ? [1] : [];
    }
    // The parts the store holds, each at its planned size.
    const stored = known.held ?? (await s3gate.storedParts(id));
    known.held = null;
    const size = fileFor(id)?.size;
    const planned = (n) => Math.min(stored.part_size, size - (n - 1) * stored.part_size);
    return stored.parts
      .filter((p) => size == null || p.size === planned(p.part_number))
      .map((p) => p.part_number);
  };

  const signRequest = async ({ method, key, uploadId, partNumber }) => {
    const id = uploadId ?? key;
    // A file the service refused to declare: that refusal it is, whatever is asked.
    const file = fileFor(id);
    if (file && failures.has(file.id)) throw problemError(failures.get(file.id));
    if (method === "POST" && uploadId == null) {
      // CreateMultipartUpload: the service created it (or planned one PUT) when it declared it.
      if (!plans.has(key)) throw unsupported("upload of a file it did not declare");
      return xml("InitiateMultipartUploadResult", `<Key>${key}</Key><UploadId>${key}</UploadId>`);
    }
    if (method === "PUT") {
      const known = await planFor(id);
      if (known.plan.method === "PUT") {
        // The one PUT: the only part (or a PutObject, for an empty file, which the service
        // refused when it was declared).
        if ((partNumber ?? 1) !== 1) throw unsupported("a second part of a one-PUT upload");
        return { url: known.plan.url, headers: { ...known.plan.headers } };
      }
      if (partNumber == null) throw unsupported("a single PUT of a multipart upload");
      const part = await partUrl(known, id, partNumber);
      return { url: part.url, headers: { ...part.headers } };
    }
    if (method === "GET") {
      // ListParts (a retry, a restore): what the store holds, so nothing is sent twice.
      const held = await storedList(id, await planFor(id));
      const parts = held.map((n) => `<Part><PartNumber>${n}</PartNumber><ETag>held</ETag></Part>`);
      return xml("ListPartsResult", parts.join(""));
    }
    if (method === "POST") {
      // CompleteMultipartUpload: the service completes the file and checks it; its verdict is
      // the answer (a refused file fails here, never shown as uploaded).
      await finish(id);
      const location = new URL(`files/${encodeURIComponent(id)}`, apiRoot(endpoint)).href;
      const result = `<Location>${location}</Location><Key>${id}</Key>`;
      return xml("CompleteMultipartUploadResult", result);
    }
    if (method === "DELETE" && uploadId != null) {
      // AbortMultipartUpload (the file was removed): abandon it (idempotent).
      await abandon(id);
      return xml("AbortMultipartUploadResult", "");
    }
    throw unsupported(method);
  };

  return {
    // One flow for every file but an empty one: a one-PUT file is a one-part upload here,
    // so its completion and its resume are answered by the service like a multipart one's.
    shouldUseMultipart: (file) => (file.size ?? file.data?.size ?? 0) > 0,
    // The part size the file was declared with (restored after a reload, too); a one-PUT
    // file's is its size. Else what the pre-processor is about to declare.
    getChunkSize: ({ size }) => {
      const declared = uppy.getFiles().find((f) => f.s3gate?.partSize && f.size === size);
      if (declared) return declared.s3gate.partSize;
      return settings && size > settings.multipart_threshold ? partSize(size) : size;
    },
    generateObjectKey: (file) => file.s3gate?.id ?? file.id,
    signRequest,
  };
}

/** Uppy's `response` for a failure: the problem+json, or the client's code. */
function failedResponse(error) {
  return { status: error?.status ?? 0, body: error?.problem ?? { code: error?.code ?? "error" } };
}

// GET /uploads/settings, once per client (again after a failure): what the service accepts.
const SETTINGS = new WeakMap();

/**
 * The deployment's published settings; with `restrict`, Uppy's `restrictions` follow them
 * (`maxFileSize` no larger than the service's, `allowedFileTypes` the service's patterns
 * unless the app set its own), so a file the service would refuse is refused when added.
 */
function publishedSettings(uppy, client, restrict) {
  let pending = SETTINGS.get(client);
  if (!pending) {
    pending = client.uploadSettings().then((settings) => {
      if (restrict) restrictTo(uppy, settings);
      return settings;
    });
    pending.catch(() => SETTINGS.delete(client));
    SETTINGS.set(client, pending);
  }
  return pending;
}

function restrictTo(uppy, settings) {
  const current = uppy.opts?.restrictions ?? {};
  const limit = settings.max_file_size;
  const maxFileSize = current.maxFileSize ? Math.min(current.maxFileSize, limit) : limit;
  const types = settings.allowed_content_types;
  const allowedFileTypes =
    current.allowedFileTypes ?? (types.includes("*/*") ? null : types.slice());
  uppy.setOptions({ restrictions: { ...current, maxFileSize, allowedFileTypes } });
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
