// The test page: a real app's Uppy (core, Dashboard, Golden Retriever, and @uppy/aws-s3 for
// the helper) with s3gate's /client/uppy.js, bundled by esbuild from npm at test time and
// served from an origin of its own. `?api=` names the service, `#token=` the bearer token,
// `?mode=aws` uses @uppy/aws-s3 with awsS3Options() instead of the S3gate plugin.
import AwsS3 from "@uppy/aws-s3";
import Uppy from "@uppy/core";
import Dashboard from "@uppy/dashboard";
import GoldenRetriever from "@uppy/golden-retriever";
import S3gate, { awsS3Options } from "../../../app/static/client/uppy.js";
import "@uppy/core/css/style.min.css";
import "@uppy/dashboard/css/style.min.css";

const query = new URLSearchParams(location.search);
const token = new URLSearchParams(location.hash.slice(1)).get("token");
const endpoint = query.get("api");
const mode = query.get("mode") ?? "plugin";
const numbers = (names) =>
  Object.fromEntries(names.filter((n) => query.has(n)).map((n) => [n, Number(query.get(n))]));

const uppy = new Uppy({ id: `s3gate-${mode}` });
uppy.use(Dashboard, {
  inline: true,
  target: "#uppy",
  height: 520,
  showProgressDetails: true,
  proudlyDisplayPoweredByUppy: false,
});
uppy.use(GoldenRetriever);
if (mode === "aws") {
  const options = awsS3Options(uppy, { endpoint, token, ...numbers(["completionWait"]) });
  uppy.use(AwsS3, { ...options, ...numbers(["limit"]) });
} else {
  const tuning = numbers(["limit", "concurrency", "retries", "completionWait"]);
  uppy.use(S3gate, { endpoint, token, ...tuning });
}

// What the tests read: every value of each file's progress as Uppy holds it (what the
// Dashboard draws), and the events in order.
window.progress = {};
window.events = [];
uppy.on("state-update", (prev, next) => {
  for (const [id, file] of Object.entries(next.files)) {
    const before = prev.files[id]?.progress?.bytesUploaded;
    const now = file.progress?.bytesUploaded;
    if (typeof now === "number" && now !== before) (window.progress[file.name] ??= []).push(now);
  }
});
const details = { "upload-error": (error) => error?.message, "s3gate:status": (s) => s?.status };
for (const name of ["upload-success", "upload-error", "complete", "restored", "s3gate:status"]) {
  uppy.on(name, (file, detail) =>
    window.events.push({ name, file: file?.name ?? null, detail: details[name]?.(detail) ?? null }),
  );
}
window.uppy = uppy;
window.Uppy = Uppy; // for a second instance, with /client/uppy.js as the service serves it
window.ready = true;
