// Compiled by tests/browser/test_uppy.py (tsc, no output): /client/uppy.d.ts must fit Uppy's
// own types the way an app uses it.
import AwsS3 from "@uppy/aws-s3";
import Uppy from "@uppy/core";
import S3gate, { awsS3Options, type S3gateFileState } from "../../../app/static/client/uppy.js";

const withPlugin = new Uppy().use(S3gate, {
  endpoint: "https://api.example.com/",
  token: () => "a token",
  limit: 2,
  retries: 8,
});
withPlugin.getPlugin("S3gate")?.client.download("0b6f1c1e-8a34-4c8e-9a51-2f0d3e0a9c11");
withPlugin.on("s3gate:status", (file, state) => console.log(file?.name, state.status));
withPlugin.on("upload-error", (file) => console.log(file?.s3gate?.code, file?.error));
const status: S3gateFileState["status"] | undefined = withPlugin.getFiles()[0]?.s3gate?.status;

const withAwsS3 = new Uppy();
withAwsS3.use(
  AwsS3,
  awsS3Options(withAwsS3, { endpoint: "https://api.example.com/", token: "t", retries: 10 }),
);

export { status };
