"use client";
// A file input on useS3gateUpload, as docs/react.md shows it (type-checked with the hook).

import type { ChangeEvent } from "react";
import { S3gateError } from "s3gate-client";
import { tokenFromBackend, useS3gateUpload } from "./useS3gateUpload";

// Once per page load, not per render: it caches the token your backend mints.
const token = tokenFromBackend("/api/s3gate-token");

export interface UploadFieldProps {
  /** The s3gate API root, e.g. process.env.NEXT_PUBLIC_S3GATE_URL. */
  baseUrl: string;
  /** Called with the id of a verified file: send that to your backend, not a URL. */
  onUploaded: (fileId: string) => void;
  accept?: string;
}

export function UploadField({ baseUrl, onUploaded, accept }: UploadFieldProps) {
  const { upload, abort, progress, status, error, file } = useS3gateUpload({ baseUrl, token });

  async function onChange(event: ChangeEvent<HTMLInputElement>) {
    const picked = event.target.files?.[0];
    if (!picked) return;
    const done = await upload(picked);
    if (done) onUploaded(done.id);
  }

  return (
    <div>
      <input type="file" accept={accept} onChange={onChange} disabled={status === "uploading"} />
      {status === "uploading" && (
        <>
          <progress value={progress} max={1} />
          <button type="button" onClick={abort}>
            Cancel
          </button>
        </>
      )}
      {status === "done" && file && <p>{file.filename} uploaded</p>}
      {status === "aborted" && <p>Cancelled: pick the same file again to resume.</p>}
      {status === "error" && error && (
        <p role="alert">
          {error instanceof S3gateError ? `${error.code}: ${error.message}` : error.message}
        </p>
      )}
    </div>
  );
}
