// Types for s3gate's Uppy plugin (/client/uppy.js). Supported: Uppy 6 (@uppy/core >=6.0.0 <7,
// tested with 6.3.1); awsS3Options: @uppy/aws-s3 >=6.2.0 <7 (tested with 6.3.1). The module
// imports nothing from Uppy at run time; these types use @uppy/core's, which an app using Uppy
// has installed.

import type { BasePlugin, Body, Meta, PluginOpts, Uppy, UppyFile } from "@uppy/core";
import type {
  FileStatus,
  Problem,
  S3gateClient,
  S3gateFile,
  TokenSource,
  UploadOptions,
} from "./s3gate.js";

/** The @uppy/core versions this plugin is written and tested for. */
export declare const SUPPORTED_UPPY: string;

/** What the plugin (and awsS3Options) keeps on each Uppy file, as `file.s3gate`. */
export interface S3gateFileState {
  /** The s3gate file id, once the service declared it. */
  id: string | null;
  /** `pending` until completed, `verifying` while the service checks the bytes, then
   * `available`, or `rejected` / `expired`; null if the service never answered. */
  status: FileStatus | null;
  /** The API's problem code (`upload_rejected`, `quota_exceeded`, ...) or the client's own
   * (`network_error`, `storage_refused`, ...) of the last failure; null otherwise. */
  code: string | null;
}

declare module "@uppy/core" {
  interface UppyEventMap<M extends Meta, B extends Body> {
    /** `file.s3gate` changed (both the plugin and awsS3Options emit it). */
    "s3gate:status": (file: UppyFile<M, B> | undefined, state: S3gateFileState) => void;
  }
  interface PluginTypeRegistry<M extends Meta, B extends Body> {
    S3gate: S3gate<M, B>;
  }
}

declare module "@uppy/core/utils" {
  interface LocalUppyFile<M extends Meta, B extends Body> {
    s3gate?: S3gateFileState;
  }
  interface RemoteUppyFile<M extends Meta, B extends Body> {
    s3gate?: S3gateFileState;
  }
}

export interface S3gateOptions
  extends PluginOpts,
    Pick<
      UploadOptions,
      | "concurrency"
      | "partBatch"
      | "checksum"
      | "checksumMaxBytes"
      | "completionWait"
      | "verifyTimeoutMs"
      | "multipart"
    > {
  /** The API root, e.g. `https://api.example.com/`. Default: the root this module was served
   * from (pass it when a bundler copies the module into the app). */
  endpoint?: string | null;
  token?: TokenSource | null;
  /** Attempts per request (default 8 here: each 429, waited out, counts as one). */
  retries?: number;
  /** Files uploaded at once (default 3); `concurrency` is the parts in flight per file. */
  limit?: number;
  /** A client of your own instead of one built from endpoint and token. */
  client?: S3gateClient;
  /** Uppy's `restrictions` follow `GET /uploads/settings` (default true): `maxFileSize` no
   * larger than the service's, `allowedFileTypes` its patterns unless the app set its own. */
  restrict?: boolean;
}

/**
 * `uppy.use(S3gate, {endpoint, token})`: Dashboard progress (never going down), pause and
 * resume (the parts the store holds are kept), remove or cancel (the upload is abandoned),
 * retries with Retry-After, restore after a reload with @uppy/golden-retriever, and
 * `file.s3gate` on each file. A failed file's `error` starts with the problem code
 * (`upload_rejected: ...`), and `file.response.body` is the problem+json. A successful one's
 * `file.response.body` is the s3gate File (status `available`).
 *
 * Emits `s3gate:status` (file, state) whenever `file.s3gate` changes.
 *
 * Declared as a BasePlugin for `uppy.use`'s types; it implements what Uppy calls on a plugin
 * without importing Uppy.
 */
export default class S3gate<
  M extends Meta = Meta,
  B extends Body = Record<string, never>,
> extends BasePlugin<
  S3gateOptions,
  M,
  B
> {
  static VERSION: string;
  constructor(uppy: Uppy<M, B>, opts?: S3gateOptions);
  /** The s3gate.js client it uploads with (downloads, listings, deletes ...). */
  readonly client: S3gateClient;
}
export { S3gate };

/** What awsS3Options reads of an Uppy file (any UppyFile is one). */
export interface FileWithS3gateState {
  id: string;
  s3gate?: S3gateFileState & { multipart?: boolean; partSize?: number; attempt?: number };
}

/** The options `uppy.use(AwsS3, ...)` takes, as awsS3Options returns them. */
export interface AwsS3OptionsForS3gate {
  shouldUseMultipart: (file: FileWithS3gateState) => boolean;
  getChunkSize: (file: { size: number }) => number;
  generateObjectKey: (file: FileWithS3gateState) => string;
  signRequest: (request: {
    method: "PUT" | "POST" | "GET" | "DELETE";
    key: string;
    uploadId?: string;
    partNumber?: number;
  }) => Promise<{ url: string; headers?: Record<string, string> }>;
}

/**
 * For apps that keep @uppy/aws-s3 6.x (>=6.2.0): `uppy.use(AwsS3, awsS3Options(uppy,
 * {endpoint, token}))`. Registers a pre-processor (declares each file: size, type, SHA-256
 * computed in the browser, an Idempotency-Key derived from the Uppy file id, the part size
 * when multipart). Every non-empty file goes through @uppy/aws-s3's multipart flow (a one-PUT
 * file as its one part): its create, list, complete and abort requests are answered with
 * `data:` URLs (a Content-Security-Policy must allow `data:` in connect-src), "complete" after
 * the service completed the file and gave its verdict, "list" after it said what it holds,
 * "abort" after it abandoned the upload. Part URLs are asked for 16 at a time; every API call
 * honours Retry-After. Failures show as with the plugin (`file.error` starting with the
 * problem code, `file.response.body` the problem+json, `file.s3gate`); a refused file is
 * never shown as uploaded.
 */
export declare function awsS3Options<M extends Meta, B extends Body>(
  uppy: Uppy<M, B>,
  options?: {
    endpoint?: string | null;
    token?: TokenSource | null;
    client?: S3gateClient;
    /** As the plugin's: Uppy's `restrictions` follow `GET /uploads/settings`. */
    restrict?: boolean;
  } & Pick<UploadOptions, "retries" | "completionWait" | "verifyTimeoutMs">,
): AwsS3OptionsForS3gate;

export type { Problem, S3gateFile };
