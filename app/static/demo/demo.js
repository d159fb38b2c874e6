// The s3gate demo: every call goes through the browser client the service ships.
// Built with DOM APIs and textContent only: file names are user input.
import { createClient } from "../client/s3gate.js";

const TOKEN_KEY = "s3gate.demo.token";
const $ = (selector) => document.querySelector(selector);

let token = sessionStorage.getItem(TOKEN_KEY) ?? "";
const client = createClient({ token: () => token });

// `s3gate dev` links to /demo/#token=...: a fragment never reaches a server or its logs.
const fragment = new URLSearchParams(location.hash.slice(1));
if (fragment.get("token")) {
  useToken(fragment.get("token"));
  history.replaceState(null, "", location.pathname + location.search);
}
$("#token").value = token;
showTokenState();

$("#token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  useToken($("#token").value.trim());
  refresh();
});
$("#refresh").addEventListener("click", () => refresh());
$("#files").addEventListener("change", (event) => {
  const files = Array.from(event.target.files);
  event.target.value = ""; // picking the same file again (to resume) fires change again
  for (const file of files) startUpload(file);
});

function useToken(value) {
  token = value;
  sessionStorage.setItem(TOKEN_KEY, value);
  showTokenState();
}

function showTokenState() {
  $("#token-state").textContent = token ? "token set" : "no token yet";
}

function startUpload(file) {
  const row = $("#upload-row").content.firstElementChild.cloneNode(true);
  const bar = row.querySelector("progress");
  const percent = row.querySelector(".percent");
  const state = row.querySelector(".state");
  const cancel = row.querySelector(".cancel");
  row.querySelector(".name").textContent = file.name;
  row.dataset.filename = file.name;
  $("#uploads").prepend(row);

  const controller = new AbortController();
  cancel.addEventListener("click", () =>
    controller.abort(new DOMException("cancelled", "AbortError")),
  );
  const concurrency = Math.max(1, Math.min(16, Number($("#concurrency").value) || 4));
  const setState = (text, kind) => {
    state.textContent = text;
    state.className = `state ${kind ?? ""}`;
    row.dataset.state = kind ?? "running";
  };
  setState("uploading");
  client
    .upload(file, {
      signal: controller.signal,
      concurrency,
      onProgress: ({ fraction }) => {
        bar.setAttribute("value", String(fraction)); // an attribute, so observers see each step
        percent.textContent = `${Math.floor(fraction * 100)}%`;
      },
    })
    .then((done) => {
      row.dataset.fileId = done.id;
      setState(`${done.status}`, "done");
      cancel.remove();
      refresh();
    })
    .catch((error) => {
      cancel.remove();
      if (error?.name === "AbortError")
        setState("cancelled: pick the file again to resume", "failed");
      else setState(describe(error), "failed");
      refresh();
    });
}

function describe(error) {
  return error?.code ? `${error.code}: ${error.message}` : String(error);
}

async function refresh() {
  const listError = $("#list-error");
  if (!token) return;
  try {
    const page = await client.list({ limit: 50 });
    listError.hidden = true;
    $("#file-rows").replaceChildren(...page.items.map(fileRow));
  } catch (error) {
    listError.textContent = describe(error);
    listError.hidden = false;
  }
}

function fileRow(file) {
  const row = document.createElement("tr");
  row.dataset.fileId = file.id;
  const cells = [
    file.filename,
    file.content_type,
    formatBytes(file.size),
    file.status,
    new Date(file.created_at).toLocaleString(),
  ];
  for (const text of cells) {
    const cell = document.createElement("td");
    cell.textContent = text;
    row.append(cell);
  }
  row.cells[3].className = `status status-${file.status}`;
  const actions = document.createElement("td");
  actions.className = "actions";
  if (file.status === "available") actions.append(button("Download", () => downloadFile(file)));
  actions.append(button("Delete", () => removeFile(file)));
  row.append(actions);
  return row;
}

function button(label, onClick) {
  const element = document.createElement("button");
  element.type = "button";
  element.textContent = label;
  element.addEventListener("click", onClick);
  return element;
}

async function downloadFile(file) {
  try {
    const link = await client.download(file.id);
    location.assign(link.url); // served as an attachment: the browser saves it
  } catch (error) {
    alert(describe(error));
  }
}

async function removeFile(file) {
  try {
    if (file.status === "pending") await client.abandon(file.id);
    else await client.deleteFile(file.id);
  } catch (error) {
    alert(describe(error));
  }
  refresh();
}

function formatBytes(bytes) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit ? value.toFixed(1) : value} ${units[unit]}`;
}

refresh();
