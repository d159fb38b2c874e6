// Types for the s3gate browser client (/client/s3gate.js), matching the service's HTTP API.

/**
 * `verifying`: uploaded and accepted; the service checks it in the background, then makes it
 * `available` or `rejected`. Downloads of a verifying file answer 409 `file_not_available`.
 */
export type FileStatus = "pending" | "verifying" | "available" | "rejected" | "expired";

/** The File resource. Timestamps are RFC 3339 in UTC. */
export interface S3gateFile {
  id: string;
  filename: string;
  content_type: string;
  size: number;
  checksum_sha256: string | null;
  status: FileStatus;
  created_at: string;
  completed_at: string | null;
  upload_expires_at: string;
}

export interface FileList {
  items: S3gateFile[];
  next_cursor: string | null;
}

export interface DownloadLink {
  url: string;
  method: "GET";
  expires_at: string;
}

export type Permission = "read" | "delete";

/** A file shared with one subject or one group (exactly one of the two is set). */
export interface Grant {
  id: string;
  file_id: string;
  /** A token's `sub`. */
  subject: string | null;
  /** A value of the token claim S3GATE_GROUP_CLAIM names. */
  group: string | null;
  /** `read`: see the file and download it; `delete`: that, and delete it. */
  permission: Permission;
  /** The `sub` that granted it (the owner or an admin). */
  created_by: string;
  created_at: string;
  expires_at: string | null;
  /** False once expired. */
  active: boolean;
}

export type ShareLinkState = "active" | "expired" | "exhausted" | "revoked";

/** A share link as listed: never its token (the service keeps only its SHA-256). */
export interface ShareLink {
  id: string;
  file_id: string;
  created_by: string;
  created_at: string;
  expires_at: string;
  /** Uses allowed; null: no cap. */
  max_downloads: number | null;
  /** Uses so far (each one a redirect to a fresh download URL). */
  downloads: number;
  revoked_at: string | null;
  state: ShareLinkState;
}

/** The answer of `createLink`, the only one that holds the token. */
export interface CreatedShareLink extends ShareLink {
  token: string;
  /** Absolute `/s/{token}` URL, no token needed: each GET redirects (307) to a fresh URL. */
  url: string;
}

/** One id's answer in `downloadMany`, in the order asked: a URL, or the single route's problem. */
export type BatchDownloadItem =
  | { id: string; url: string; method: "GET"; expires_at: string; problem: null }
  | {
      id: string;
      url: null;
      method: null;
      expires_at: null;
      /** `not_found`, `file_not_available` or `rate_limited`. */
      problem: Problem & { detail: string };
    };

export type AccessAction = "upload" | "part" | "download" | "link";

/** One URL the service issued for the file. */
export interface AccessEntry {
  id: number;
  action: AccessAction;
  /** The token's `sub`; null for a share link's use. */
  actor_sub: string | null;
  /** The share link used (action `link`). */
  link_id: string | null;
  client_address: string | null;
  issued_at: string;
  /** When the URL stops working. */
  expires_at: string;
  /** Action `part`: which part. */
  part_number: number | null;
}

export interface AccessPage {
  items: AccessEntry[];
  next_cursor: string | null;
}

/** An application/problem+json body (RFC 9457) with s3gate's stable `code`. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail?: string;
  code: string;
  errors?: { loc: (string | number)[]; msg: string }[];
}

/**
 * Every failure. `code` is the API's problem+json code (`not_found`, `quota_exceeded`,
 * `upload_rejected`, `rate_limited`, ...) or one of the client's own:
 * `network_error` (connection failed, or CORS refused the page's origin),
 * `storage_refused` (S3 answered an error; `s3Code` holds S3's code, e.g. `BadDigest`),
 * `verification_timeout` (still `verifying` after `verifyTimeoutMs`; the resume record is kept,
 * so uploading the same file again waits for the same upload),
 * `missing_token`, `unsupported_upload`, `http_<status>` (a non-problem error page).
 * A file rejected by a background verification fails with `upload_rejected` (status 422), as
 * one rejected by `complete` itself does; `problem` is then null (no problem body was sent).
 */
export declare class S3gateError extends Error {
  readonly name: "S3gateError";
  readonly code: string;
  /** HTTP status, or 0 when no answer arrived. */
  readonly status: number;
  readonly problem: Problem | null;
  readonly s3Code: string | null;
  /** Seconds, from `Retry-After` (429 and 503). */
  readonly retryAfter: number | null;
}

/** A bearer token, or a function returning one (called before each API request). */
export type TokenSource = string | (() => string | Promise<string>);

export interface Progress {
  /** Bytes the store has received; never decreases. */
  loaded: number;
  total: number;
  /** loaded / total, 0 to 1. */
  fraction: number;
}

export interface ClientOptions {
  /** The API root. Default: the root this module was served from. */
  baseUrl?: string;
  token?: TokenSource | null;
  /** Parts uploaded at once (default 4). */
  concurrency?: number;
  /** Attempts per request on network errors, 5xx, 429 and expired URLs (default 5). */
  retries?: number;
  /** Part URLs asked for per request (default 16). */
  partBatch?: number;
  /** `checksum: "auto"` hashes files up to this many bytes (default 64 MiB). */
  checksumMaxBytes?: number;
  /**
   * Seconds `complete` asks the service to hold its answer while it verifies the upload
   * (`Prefer: wait=N`, default 20; the service caps it); 0 sends no `Prefer` header, for a
   * cross-origin service whose CORS does not allow it.
   */
  completionWait?: number;
  /** How long an upload waits for a background verification to end (default 600000 ms). */
  verifyTimeoutMs?: number;
}

export interface CallOptions {
  token?: TokenSource | null;
  signal?: AbortSignal | null;
}

export interface UploadOptions extends CallOptions, Omit<ClientOptions, "baseUrl" | "token"> {
  onProgress?: (progress: Progress) => void;
  /** Default: the file's name. */
  filename?: string;
  /** Default: the file's type, else application/octet-stream. */
  contentType?: string;
  /**
   * Declare the SHA-256 so S3 refuses other bytes and the service verifies them:
   * `true`, `false`, or `"auto"` (default: files up to `checksumMaxBytes`).
   */
  checksum?: boolean | "auto";
  /** Upload in parts even below the service's multipart threshold. */
  multipart?: boolean;
  /** Resume this file's unfinished upload after a reload (default true; uses localStorage). */
  resume?: boolean;
  /**
   * What identifies the file for resuming (an Uppy file id, say); default: its name, size,
   * `lastModified` and type. For Blobs that have no name, or a widget with ids of its own.
   */
  resumeKey?: string;
  /**
   * Called with the File each time the service answers about it: `pending` once created (or
   * resumed), then `verifying` while it checks the bytes in the background (each poll).
   */
  onFile?: (file: S3gateFile) => void;
}

export interface ListOptions extends CallOptions {
  /** 1 to 200 (default 50). */
  limit?: number;
  cursor?: string | null;
  /** Admins only: whose files. */
  owner?: string | null;
  /** The files other owners shared with the caller (a live grant) instead of its own. */
  shared?: boolean;
}

/** Exactly one grantee: a subject or a group. */
export type Grantee = { subject: string; group?: null } | { group: string; subject?: null };

export type ShareOptions = CallOptions &
  Grantee & {
    /** Default `read`. */
    permission?: Permission;
    /** When the grant stops working: a Date, or RFC 3339 with a zone; default never. */
    expiresAt?: Date | string | null;
  };

export interface LinkOptions extends CallOptions {
  /** Seconds the link works for: at least 60, at most S3GATE_LINK_MAX_TTL_SECONDS. */
  expiresIn: number;
  /** Uses allowed (default: no cap). */
  maxDownloads?: number | null;
}

export interface AccessHistoryOptions extends CallOptions {
  /** 1 to 500 (default 100). */
  limit?: number;
  cursor?: string | null;
}

/** `GET /uploads/settings`: what this deployment accepts, and the caller's quotas. */
export interface UploadSettings {
  max_file_size: number;
  allowed_content_types: string[];
  multipart_threshold: number;
  part_size: number;
  min_part_size: number;
  max_part_size: number;
  max_parts: number;
  max_part_numbers_per_request: number;
  part_url_budget_per_part: number;
  upload_url_ttl_seconds: number;
  download_url_ttl_seconds: number;
  multipart_deadline_seconds: number;
  form_uploads: boolean;
  completion_max_wait_seconds: number;
  rate_limit_per_minute: number;
  rate_limit_burst: number;
  quota_bytes: number;
  quota_pending_uploads: number;
}

/** The body of `POST /uploads`. */
export interface UploadDeclaration {
  filename: string;
  content_type: string;
  size: number;
  /** Base64 of the 32-byte SHA-256 digest. */
  checksum_sha256?: string | null;
  multipart?: boolean;
  /** 5 MiB to 5 GiB, at most 10,000 parts; implies multipart. */
  part_size?: number | null;
  form?: boolean;
}

export interface PresignedPut {
  method: "PUT";
  url: string;
  /** Send exactly these (plus Content-Length). */
  headers: Record<string, string>;
  expires_at: string;
}

export interface MultipartPlan {
  method: "MULTIPART";
  part_size: number;
  part_count: number;
  expires_at: string;
}

export interface PresignedForm {
  method: "POST";
  url: string;
  fields: Record<string, string>;
  expires_at: string;
}

export interface CreatedUpload {
  file: S3gateFile;
  upload: PresignedPut | MultipartPlan | PresignedForm;
}

export interface PartUrl {
  part_number: number;
  url: string;
  headers: Record<string, string>;
  expires_at: string;
}

export interface StoredParts {
  part_size: number;
  part_count: number;
  parts: { part_number: number; size: number }[];
}

/** Base64 of a Blob's SHA-256 (reads it into memory), as `checksum_sha256` declares it. */
export declare function sha256Base64(blob: Blob): Promise<string>;

export declare const defaultBaseUrl: string;

export declare class S3gateClient {
  constructor(options?: ClientOptions);
  /**
   * Upload a File or Blob: a single PUT or a multipart upload, as the service decides; resolves
   * to the File once the service has verified the stored bytes (status `available`). A file the
   * service verifies in the background (`complete` answered 202 `verifying`) is polled with
   * backoff until it is available or rejected; `signal` stops that wait too.
   */
  upload(
    file: Blob & { name?: string; lastModified?: number },
    options?: UploadOptions,
  ): Promise<S3gateFile>;
  download(
    id: string,
    options?: CallOptions & { disposition?: "attachment" | "inline" },
  ): Promise<DownloadLink>;
  list(options?: ListOptions): Promise<FileList>;
  /** Asked once per client (again after a failure, or with `fresh: true`). upload() works
   * within it: a file over `max_file_size` or of a type not allowed is refused (413
   * `file_too_large`, 415 `content_type_not_allowed`) before it is hashed or declared. */
  uploadSettings(options?: CallOptions & { fresh?: boolean }): Promise<UploadSettings>;
  getFile(id: string, options?: CallOptions): Promise<S3gateFile>;
  deleteFile(id: string, options?: CallOptions): Promise<null>;
  abandon(id: string, options?: CallOptions): Promise<void>;
  /**
   * The steps `upload()` takes, for widgets that send the bytes themselves: `POST /uploads`
   * (the same `idempotencyKey` replays it: same file, fresh URLs).
   */
  createUpload(
    declaration: UploadDeclaration,
    options?: CallOptions & { idempotencyKey?: string | null },
  ): Promise<CreatedUpload>;
  /** Part URLs for a multipart upload, up to 1000 part numbers per call. */
  partUrls(id: string, partNumbers: Iterable<number>, options?: CallOptions): Promise<PartUrl[]>;
  /** The parts the store already holds (resume). */
  storedParts(id: string, options?: CallOptions): Promise<StoredParts>;
  /**
   * `POST /uploads/{id}/complete`, then, for a `verifying` file, its verdict: the File once
   * available, else an S3gateError (`upload_rejected`, `upload_incomplete`, ...).
   */
  complete(
    id: string,
    options?: CallOptions &
      Pick<UploadOptions, "completionWait" | "verifyTimeoutMs" | "onFile">,
  ): Promise<S3gateFile>;
  /** Grant a subject or a group access; granting the same grantee again replaces its grant. */
  share(id: string, options: ShareOptions): Promise<Grant>;
  /** Expired grants too (`active` false), until the reaper prunes them. */
  grants(id: string, options?: CallOptions): Promise<Grant[]>;
  /** A second revoke of the same grant fails with `not_found`. */
  revokeGrant(id: string, grantId: string, options?: CallOptions): Promise<null>;
  /** A share link to an available file (else `file_not_available`); keep its `url`. */
  createLink(id: string, options: LinkOptions): Promise<CreatedShareLink>;
  /** Never their tokens. */
  links(id: string, options?: CallOptions): Promise<ShareLink[]>;
  /** Revoking a revoked link succeeds again. */
  revokeLink(id: string, linkId: string, options?: CallOptions): Promise<null>;
  /** Up to 100 ids (`validation_error` beyond); one item per id, in order. */
  downloadMany(
    ids: readonly string[],
    options?: CallOptions & { disposition?: "attachment" | "inline" },
  ): Promise<BatchDownloadItem[]>;
  /** The owner and admins only (a grantee gets `forbidden`). */
  accessHistory(id: string, options?: AccessHistoryOptions): Promise<AccessPage>;
}

export declare function createClient(options?: ClientOptions): S3gateClient;

/** Shortcuts against the API this module was served from. */
export declare function upload(
  file: Blob & { name?: string; lastModified?: number },
  options?: UploadOptions,
): Promise<S3gateFile>;
export declare function download(
  id: string,
  options?: CallOptions & { disposition?: "attachment" | "inline" },
): Promise<DownloadLink>;
export declare function list(options?: ListOptions): Promise<FileList>;
