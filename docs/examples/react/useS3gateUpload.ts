"use client";
// useS3gateUpload: one file at a time through s3gate, as React state. Copy this file into your
// app (Next.js: any client component may call it); it needs `react` and `s3gate-client`.
// docs/react.md explains the setup; tests/integration/test_npm_package.py type-checks this file
// against the package's own types.

import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import {
  S3gateClient,
  type S3gateFile,
  type TokenSource,
  type UploadOptions,
} from "s3gate-client";

/** What `upload` takes: a File from an <input type="file">, a drop, or any Blob. */
export type UploadInput = Parameters<S3gateClient["upload"]>[0];

/** Per-upload options; the hook owns `signal` and `onProgress`. */
export type UploadCallOptions = Omit<UploadOptions, "signal" | "onProgress" | "token">;

/**
 * `idle`: nothing yet (or `reset`); `uploading`: bytes on their way, then `complete` and the
 * service's verification; `done`: `file` is available; `error`: see `error`; `aborted`: `abort`
 * was called (pick the same file again to resume where it stopped).
 */
export type UploadStatus = "idle" | "uploading" | "done" | "error" | "aborted";

export interface UseS3gateUploadOptions extends UploadCallOptions {
  /**
   * The s3gate API root, e.g. `https://files.example.com/`. Required with the npm package: the
   * module's own default is only right when it is loaded from the service's /client/ URL.
   */
  baseUrl: string;
  /**
   * The user's s3gate token, or a function returning one (called before each API request, so
   * make it cheap: `tokenFromBackend` below caches). The latest value is always used.
   */
  token: TokenSource;
}

export interface S3gateUpload {
  /**
   * Upload one file; resolves to the File once the service has verified it, or to null when it
   * failed (`error`) or was aborted. A new call aborts the upload in flight.
   */
  upload: (file: UploadInput, options?: UploadCallOptions) => Promise<S3gateFile | null>;
  /** Stop the upload in flight (the status becomes `aborted`). */
  abort: () => void;
  /** Back to `idle` (aborting any upload in flight). */
  reset: () => void;
  /** 0 to 1: the bytes the store has received; never goes down during an upload. */
  progress: number;
  status: UploadStatus;
  /** An `S3gateError` (`error.code`: `quota_exceeded`, `upload_rejected`, ...) or another failure. */
  error: Error | null;
  /** The verified file once `status` is `done`: keep `file.id`, never a URL. */
  file: S3gateFile | null;
  /** The client itself, for `download(file.id)`, `list()`, `uploadSettings()` and the rest. */
  client: S3gateClient;
}

export function useS3gateUpload({
  baseUrl,
  token,
  ...defaults
}: UseS3gateUploadOptions): S3gateUpload {
  const [status, setStatus] = useState<UploadStatus>("idle");
  const [progress, setProgress] = useState(0);
  const [error, setError] = useState<Error | null>(null);
  const [file, setFile] = useState<S3gateFile | null>(null);

  // Read at each request, so a new token (or a new inline function) needs no new client.
  const tokenRef = useRef(token);
  const defaultsRef = useRef<UploadCallOptions>(defaults);
  useEffect(() => {
    tokenRef.current = token;
    defaultsRef.current = defaults;
  });

  const client = useMemo(
    () =>
      new S3gateClient({
        baseUrl,
        token: () => {
          const source = tokenRef.current;
          return typeof source === "function" ? source() : source;
        },
      }),
    [baseUrl],
  );

  const controllerRef = useRef<AbortController | null>(null);
  // Leaving the page (unmounting) stops the upload; the client can resume it later.
  useEffect(() => () => controllerRef.current?.abort(), []);

  const upload = useCallback(
    async (input: UploadInput, options: UploadCallOptions = {}): Promise<S3gateFile | null> => {
      controllerRef.current?.abort();
      const controller = new AbortController();
      controllerRef.current = controller;
      // Only the latest upload writes the state: an aborted one may still settle later.
      const current = () => controllerRef.current === controller;
      setStatus("uploading");
      setProgress(0);
      setError(null);
      setFile(null);
      try {
        const done = await client.upload(input, {
          ...defaultsRef.current,
          ...options,
          signal: controller.signal,
          onProgress: ({ fraction }) => {
            if (current()) setProgress(fraction);
          },
        });
        if (current()) {
          setFile(done);
          setStatus("done");
        }
        return done;
      } catch (caught) {
        if (current()) {
          if (controller.signal.aborted) {
            setStatus("aborted");
          } else {
            setError(caught instanceof Error ? caught : new Error(String(caught)));
            setStatus("error");
          }
        }
        return null;
      } finally {
        if (current()) controllerRef.current = null;
      }
    },
    [client],
  );

  const abort = useCallback(() => controllerRef.current?.abort(), []);

  const reset = useCallback(() => {
    const running = controllerRef.current;
    controllerRef.current = null; // so the aborted upload leaves the state alone
    running?.abort();
    setStatus("idle");
    setProgress(0);
    setError(null);
    setFile(null);
  }, []);

  return { upload, abort, reset, progress, status, error, file, client };
}

/**
 * A token source that asks your backend (`POST url`, answering `{"token", "expiresIn"}` in
 * seconds) and reuses the token until 30 s before it expires; concurrent callers share one
 * request. Create it once, at module scope, not in a component.
 */
export function tokenFromBackend(url: string, init: RequestInit = {}): () => Promise<string> {
  let cached: { token: string; until: number } | null = null;
  let pending: Promise<string> | null = null;
  const ask = async (): Promise<string> => {
    try {
      const answer = await fetch(url, { method: "POST", credentials: "same-origin", ...init });
      if (!answer.ok) throw new Error(`${url} answered HTTP ${answer.status}`);
      const { token, expiresIn } = (await answer.json()) as { token: string; expiresIn: number };
      cached = { token, until: Date.now() + Math.max(0, expiresIn - 30) * 1000 };
      return token;
    } finally {
      pending = null;
    }
  };
  return () => {
    if (cached && Date.now() < cached.until) return Promise.resolve(cached.token);
    pending ??= ask();
    return pending;
  };
}
