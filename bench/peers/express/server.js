// The benchmark peer: the seeds' design, as a Node service would build it. One process, no
// database: verify the bearer JWT (HS256 only), validate the body, presign one PUT with the
// AWS SDK v3 presigner (Content-Type and Content-Length bound into the signature). The S3
// client is built once, like s3gate's signer. Configured by the same variables as s3gate.
"use strict";

const crypto = require("node:crypto");
const express = require("express");
const jwt = require("jsonwebtoken");
const { S3Client, PutObjectCommand } = require("@aws-sdk/client-s3");
const { getSignedUrl } = require("@aws-sdk/s3-request-presigner");

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is required`);
  return value;
};

const secret = env("S3GATE_JWT_SECRET");
const bucket = env("S3GATE_S3_BUCKET");
const s3 = new S3Client({
  region: env("S3GATE_S3_REGION"),
  endpoint: env("S3GATE_S3_ENDPOINT_URL"),
  forcePathStyle: true,
  // No SDK checksum of the (empty) request body in the URL: it would refuse the real bytes.
  requestChecksumCalculation: "WHEN_REQUIRED",
  credentials: {
    accessKeyId: env("AWS_ACCESS_KEY_ID"),
    secretAccessKey: env("AWS_SECRET_ACCESS_KEY"),
  },
});

const app = express();
app.disable("x-powered-by");
app.disable("etag");
app.use(express.json({ limit: "64kb" }));

const problem = (res, status, code, detail) =>
  res.status(status).type("application/problem+json").send(JSON.stringify({ status, code, detail }));

app.get("/healthz", (req, res) => res.json({ status: "ok" }));

app.post("/uploads", async (req, res) => {
  const header = req.get("authorization") || "";
  if (!header.startsWith("Bearer ")) return problem(res, 401, "unauthorized", "bearer token required");
  let claims;
  try {
    claims = jwt.verify(header.slice(7), secret, { algorithms: ["HS256"] });
  } catch {
    return problem(res, 401, "unauthorized", "invalid token");
  }
  if (typeof claims.sub !== "string" || !claims.sub) {
    return problem(res, 401, "unauthorized", "token has no subject");
  }
  const { filename, content_type: contentType, size } = req.body || {};
  if (typeof filename !== "string" || !filename || filename.length > 255) {
    return problem(res, 422, "validation_error", "filename");
  }
  if (typeof contentType !== "string" || !contentType) {
    return problem(res, 422, "validation_error", "content_type");
  }
  if (!Number.isInteger(size) || size < 1) return problem(res, 422, "validation_error", "size");
  const id = crypto.randomUUID();
  const command = new PutObjectCommand({
    Bucket: bucket,
    Key: `uploads/${id}`,
    ContentType: contentType,
    ContentLength: size,
  });
  try {
    const url = await getSignedUrl(s3, command, {
      expiresIn: 900,
      signableHeaders: new Set(["content-type"]),
    });
    res.status(201).json({
      file: { id, filename, content_type: contentType, size, status: "pending" },
      upload: { method: "PUT", url, headers: { "Content-Type": contentType } },
    });
  } catch {
    problem(res, 503, "storage_unavailable", "could not sign");
  }
});

const port = Number(process.env.PORT || 8090);
app.listen(port, process.env.HOST || "127.0.0.1");
